"""A customer at a glance: one page per customer for every role, composed from the loan book, the reminders and
collections.

At the top, where each loan stands (outstanding balance, arrears, the oldest overdue instalment, its days past
due and DPD bucket, by the instalment rules of the loan book), its collections case and stage, the assigned
collector, the next planned contact and the next call, the promises to pay, consent and holds. Below, one
timeline of messages, calls (and voicemails left), promises and payments, newest first, each with the audit
events about it as sentences. Each part shows only to a viewer who may see its rows; personal data is masked
by the viewer's ``Masker``. Times are in the operator's zone, with the customer's local time beside them.

The page costs the same number of queries whatever the size of the customer's history: each part is one or two
queries, the timeline fetches at most one page's worth from each of its sources and the audit events of
the whole page in one query.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from backoffice.audit_sentences import sentence_of
from core.masking import Masker, known_of, masker_for
from core.models import AuditEvent
from core.money import format_money
from debt_collection.models import CallAttempt, CallTask, CollectionCase, PromiseToPay
from loans.models import Customer, Installment, Loan, Payment
from loans.schedule import DpdBucket
from notifications.choices import Channel
from notifications.models import NotificationLog
from notifications.timeline import (
    LOG_OBJECT_TYPE,
    label_of,
    message_entries,
    messages_of,
    next_planned_contact,
)

PER_PAGE = 50

# Who may open the page at all: anyone who may see the customer or their contact log. Each part below asks for
# the view permission of its own rows.
PAGE_PERMISSIONS = ("loans.view_customer", "notifications.view_notificationlog")
MESSAGES = "notifications.view_notificationlog"
CALLS = "collections.view_callattempt"
PROMISES = "collections.view_promisetopay"
PAYMENTS = "loans.view_payment"
CASES = "collections.view_collectioncase"
CALL_TASKS = "collections.view_calltask"
LOANS = "loans.view_loan"

# What the timeline's "Show" filter offers: messages by channel, calls (the "Call" channel: what collectors
# and the dialer made), promises and payments.
SHOW_CHOICES = (
    (Channel.SMS.value, Channel.SMS.label),
    (Channel.EMAIL.value, Channel.EMAIL.label),
    (Channel.PUSH.value, Channel.PUSH.label),
    (Channel.CALL.value, gettext_lazy("Calls and voicemails")),
    ("promise", gettext_lazy("Promises to pay")),
    ("payment", gettext_lazy("Payments")),
)
MESSAGE_CHANNELS = (Channel.SMS.value, Channel.EMAIL.value, Channel.PUSH.value)


# --- where each loan stands -------------------------------------------------------------------------------
@dataclass
class LoanStanding:
    loan: Loan
    outstanding: str
    arrears: str
    has_arrears: bool
    oldest_overdue: dt.date | None
    state: str
    days_past_due: int
    dpd_bucket: str
    is_legal_hold: bool
    case: CollectionCase | None = None
    stage: str = ""
    collector: str = ""
    next_call: dt.datetime | None = None


def loan_standings(customer: Customer, loans: list[Loan], now: dt.datetime) -> list[LoanStanding]:
    """Each loan's balance, arrears and oldest overdue instalment on the customer's local day of ``now`` (one
    query for the unpaid instalments of all the loans)."""
    by_loan: dict[int, list[Installment]] = {loan.pk: [] for loan in loans}
    loan_of = {loan.pk: loan for loan in loans}
    for inst in Installment.objects.filter(loan__customer=customer).unpaid().order_by("due_date", "seq"):
        inst.loan = loan_of[inst.loan_id]  # the rules read the loan's customer and tier: no query per row
        by_loan[inst.loan_id].append(inst)
    rows = []
    for loan in loans:
        unpaid = by_loan[loan.pk]
        past_due = [i for i in unpaid if i.days_past_due(now) > 0]
        oldest = past_due[0] if past_due else None
        dpd = oldest.days_past_due(now) if oldest else 0
        first_unpaid = unpaid[0] if unpaid else None
        rows.append(
            LoanStanding(
                loan=loan,
                outstanding=format_money(sum((i.outstanding for i in unpaid), Decimal("0")), loan.currency),
                arrears=format_money(sum((i.outstanding for i in past_due), Decimal("0")), loan.currency),
                has_arrears=bool(past_due),
                oldest_overdue=oldest.due_date if oldest else None,
                state=first_unpaid.state(now).label if first_unpaid else "",
                days_past_due=dpd,
                dpd_bucket=oldest.dpd_bucket(now).label if oldest else DpdBucket.CURRENT.label,
                is_legal_hold=loan.legal_hold,
            )
        )
    return rows


def _add_collections(rows: list[LoanStanding], customer: Customer, *, with_tasks: bool) -> None:
    """The open case of each loan, its stage, and (with ``with_tasks``) its collector and next call."""
    cases = {
        c.loan_id: c
        for c in CollectionCase.objects.open().filter(loan__customer=customer).select_related("tier")
    }
    tasks: dict[int, CallTask] = {}
    if with_tasks and cases:
        for task in (
            CallTask.objects.filter(case__in=list(cases.values()), status=CallTask.Status.OPEN)
            .select_related("assigned_to")
            .order_by("scheduled_for", "id")
        ):
            tasks.setdefault(task.case_id, task)
    for row in rows:
        case = cases.get(row.loan.pk)
        if case is None:
            continue
        row.case, row.stage = case, case.stage
        task = tasks.get(case.pk)
        if task is not None:
            row.next_call = task.scheduled_for
            row.collector = task.assigned_to.get_username() if task.assigned_to else _("unassigned")


# --- the timeline ------------------------------------------------------------------------------------------
@dataclass
class TimelineRow:
    """One moment of the timeline: a message, a call, a promise or a payment."""

    kind: str  # "message", "call", "promise", "payment"
    pk: int
    at: dt.datetime
    customer_local: dt.datetime
    title: str = ""
    status: str = ""
    detail: str = ""
    loan_refs: list[str] = field(default_factory=list)
    by: str = ""
    message: Any = None
    sentences: list = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"{'contact' if self.kind == 'message' else self.kind}-{self.pk}"


@dataclass
class Source:
    kind: str
    queryset: QuerySet
    time_field: str


class MergedTimeline:
    """Several sources, each newest first, read as one list newest first. Page ``n`` reads at most ``n`` pages'
    worth from each source (two queries per source: its count and its rows), whatever their sizes."""

    def __init__(self, sources: list[Source]):
        self.sources = sources

    def count(self) -> int:
        return sum(s.queryset.count() for s in self.sources)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[tuple[str, Any]]:
        top = index.stop
        merged = []
        for source in self.sources:
            for obj in source.queryset[:top]:
                merged.append((getattr(obj, source.time_field), source.kind, obj.pk, obj))
        merged.sort(key=lambda item: (item[0], item[2]), reverse=True)
        return [(kind, obj) for _at, kind, _pk, obj in merged[index]]


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min), timezone.get_current_timezone())


def timeline_filters(request: HttpRequest) -> dict[str, Any]:
    """The timeline's filters from the query string: ``show`` (a channel, ``promise`` or ``payment``),
    ``status`` (of messages), ``since`` and ``until`` (days in the operator's zone, both included). Values
    that are not offered are ignored."""
    got = {}
    show = request.GET.get("show", "")
    if show in dict(SHOW_CHOICES):
        got["show"] = show
    status = request.GET.get("status", "")
    if status in NotificationLog.Status.values:
        got["status"] = status
    for key in ("since", "until"):
        try:
            day = parse_date(request.GET.get(key, "") or "")
        except ValueError:
            day = None
        if day:
            got[key] = day
    return got


def _in_range(qs: QuerySet, time_field: str, filters: dict) -> QuerySet:
    if "since" in filters:
        qs = qs.filter(**{f"{time_field}__gte": _day_start(filters["since"])})
    if "until" in filters:
        qs = qs.filter(**{f"{time_field}__lt": _day_start(filters["until"] + dt.timedelta(days=1))})
    return qs


def shows(kind: str, filters: dict[str, Any]) -> bool:
    """Whether the timeline shows rows of ``kind`` under ``filters``: a status filter is about messages; the
    "Call" channel shows the calls made (and any message logged on that channel)."""
    show, status = filters.get("show", ""), filters.get("status", "")
    if kind == "message":
        return show in ("", *MESSAGE_CHANNELS, Channel.CALL.value)
    if status:
        return False
    return not show or show == kind or (kind == "call" and show == Channel.CALL.value)


def timeline_sources(user, customer: Customer, loan: Loan | None, filters: dict[str, Any]) -> list[Source]:
    """The sources the viewer may see, narrowed to ``loan`` and the filters."""
    sources = []
    if user.has_perm(MESSAGES) and shows("message", filters):
        qs = messages_of(customer=customer, loan=loan)
        if filters.get("show"):
            qs = qs.filter(channel=filters["show"])
        if filters.get("status"):
            qs = qs.filter(status=filters["status"])
        sources.append(Source("message", _in_range(qs, "scheduled_for", filters), "scheduled_for"))
    if user.has_perm(CALLS) and shows("call", filters):
        qs = CallAttempt.objects.filter(customer=customer)
        if loan is not None:
            qs = qs.filter(loans=loan)
        qs = qs.prefetch_related("loans").order_by("-made_at", "-id")
        sources.append(Source("call", _in_range(qs, "made_at", filters), "made_at"))
    if user.has_perm(PROMISES) and shows("promise", filters):
        qs = PromiseToPay.objects.filter(case__loan__customer=customer)
        if loan is not None:
            qs = qs.filter(case__loan=loan)
        qs = qs.select_related("case__loan", "created_by").order_by("-created_at", "-id")
        sources.append(Source("promise", _in_range(qs, "created_at", filters), "created_at"))
    if user.has_perm(PAYMENTS) and shows("payment", filters):
        qs = (
            Payment.objects.filter(loan__customer=customer)
            if loan is None
            else Payment.objects.filter(loan=loan)
        )
        qs = (
            qs.select_related("loan")
            .prefetch_related("allocations__installment")
            .order_by("-received_at", "-id")
        )
        sources.append(Source("payment", _in_range(qs, "received_at", filters), "received_at"))
    return sources


def _audit_key(kind: str, obj) -> tuple[str, str] | None:
    if kind == "message":
        return LOG_OBJECT_TYPE, str(obj.pk)
    if kind == "call":
        return ("collections.CallTask", str(obj.task_id)) if obj.task_id else None
    if kind == "promise":
        return "collections.PromiseToPay", str(obj.pk)
    return "loans.Payment", str(obj.pk)


def audit_events_about(keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[AuditEvent]]:
    """The audit events about these (object type, object id) pairs, oldest first, in one query."""
    found: dict[tuple[str, str], list[AuditEvent]] = {}
    by_type: dict[str, set[str]] = {}
    for object_type, object_id in keys:
        by_type.setdefault(object_type, set()).add(object_id)
    if not by_type:
        return found
    condition = Q()
    for object_type, ids in by_type.items():
        condition |= Q(object_type=object_type, object_id__in=sorted(ids))
    for event in AuditEvent.objects.filter(condition).order_by("seq"):
        found.setdefault((event.object_type, event.object_id), []).append(event)
    return found


def timeline_rows(items: list[tuple[str, Any]], customer: Customer, *, masker: Masker) -> list[TimelineRow]:
    """The rows of one page of the timeline, with the audit events of all of them read in one query."""
    zone = customer.zone
    pii = known_of(customer)
    events = audit_events_about([key for kind, obj in items if (key := _audit_key(kind, obj))])
    log_events = {
        object_id: found
        for (object_type, object_id), found in events.items()
        if object_type == LOG_OBJECT_TYPE
    }
    messages = {
        entry.log.pk: entry
        for entry in message_entries(
            [obj for kind, obj in items if kind == "message"], customer, masker=masker, events=log_events
        )
    }
    rows = []
    for kind, obj in items:
        key = _audit_key(kind, obj)
        sentences = [sentence_of(e, masker=masker, pii=pii) for e in events.get(key, [])] if key else []
        if kind == "message":
            entry = messages[obj.pk]
            rows.append(
                TimelineRow(
                    kind=kind,
                    pk=obj.pk,
                    at=entry.at,
                    customer_local=entry.customer_local,
                    title=entry.channel,
                    status=entry.status,
                    loan_refs=entry.loan_refs,
                    message=entry,
                    sentences=sentences,
                )
            )
        elif kind == "call":
            rows.append(
                TimelineRow(
                    kind=kind,
                    pk=obj.pk,
                    at=obj.made_at,
                    customer_local=obj.made_at.astimezone(zone),
                    title=_("Voicemail left") if obj.outcome == CallTask.Outcome.VOICEMAIL else _("Call"),
                    status=label_of(CallTask.Outcome, obj.outcome),
                    detail=masker.message(obj.voicemail_message, **pii) if obj.voicemail_message else "",
                    loan_refs=sorted(loan.ref for loan in obj.loans.all()),
                    by=obj.made_by,
                    sentences=sentences,
                )
            )
        elif kind == "promise":
            currency = obj.case.loan.currency
            rows.append(
                TimelineRow(
                    kind=kind,
                    pk=obj.pk,
                    at=obj.created_at,
                    customer_local=obj.created_at.astimezone(zone),
                    title=_("Promise to pay"),
                    status=obj.get_status_display(),
                    detail=_("%(amount)s by %(date)s")
                    % {"amount": format_money(obj.amount, currency), "date": obj.promised_date.isoformat()},
                    loan_refs=[obj.case.loan.ref],
                    by=obj.created_by.get_username() if obj.created_by else "",
                    sentences=sentences,
                )
            )
        else:
            allocations = sorted(obj.allocations.all(), key=lambda a: a.installment.seq)
            credit = obj.amount - sum((a.amount for a in allocations), Decimal("0"))
            paid = ", ".join(
                f"#{a.installment.seq}: {format_money(a.amount, obj.loan.currency)}" for a in allocations
            )
            detail = _("paid %(instalments)s") % {"instalments": paid} if paid else _("paid no instalment")
            if credit:
                detail += " · " + _("kept as credit: %(amount)s") % {
                    "amount": format_money(credit, obj.loan.currency)
                }
            rows.append(
                TimelineRow(
                    kind=kind,
                    pk=obj.pk,
                    at=obj.received_at,
                    customer_local=obj.received_at.astimezone(zone),
                    title=_("Payment %(ref)s") % {"ref": obj.ref},
                    status=format_money(obj.amount, obj.loan.currency),
                    detail=f"{obj.get_source_display()} · {detail}",
                    loan_refs=[obj.loan.ref],
                    sentences=sentences,
                )
            )
    return rows


# --- the page ----------------------------------------------------------------------------------------------
def promise_counts(customer: Customer) -> dict[str, int]:
    """How many promises of the customer are open, kept and broken (one query)."""
    S = PromiseToPay.Status
    return PromiseToPay.objects.filter(case__loan__customer=customer).aggregate(
        open=Count("pk", filter=Q(status=S.PENDING)),
        kept=Count("pk", filter=Q(status=S.KEPT)),
        broken=Count("pk", filter=Q(status=S.BROKEN)),
    )


def _consent(customer: Customer, loans: list[Loan]) -> dict[str, Any]:
    return {
        "opted_out": [str(label) for value, label in Channel.choices if customer.is_opted_out(value)],
        "do_not_contact": customer.do_not_contact,
        "do_not_contact_reason": customer.get_do_not_contact_reason_display()
        if customer.do_not_contact
        else "",
        "legal_hold": [loan.ref for loan in loans if loan.legal_hold],
    }


def _render(request: HttpRequest, *, customer: Customer, loan: Loan | None) -> HttpResponse:
    user = request.user
    now = timezone.now()
    masker = masker_for(request)
    loans = list(customer.loans.order_by("ref"))
    for item in loans:
        item.customer = customer
    standings = loan_standings(customer, loans, now) if user.has_perm(LOANS) else []
    if standings and user.has_perm(CASES):
        _add_collections(standings, customer, with_tasks=user.has_perm(CALL_TASKS))
    filters = timeline_filters(request)
    paginator = Paginator(MergedTimeline(timeline_sources(user, customer, loan, filters)), PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    rows = timeline_rows(list(page.object_list), customer, masker=masker)
    customer_name = masker.name(customer.name)
    try:
        customer_url = reverse("admin:loans_customer_change", args=[customer.pk])
    except NoReverseMatch:
        customer_url = ""
    title = _("%(customer)s at a glance") % {"customer": f"{customer.ref} · {customer_name}"}
    query = urlencode({k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in filters.items()})
    next_call = min((s.next_call for s in standings if s.next_call), default=None)
    context = {
        **admin.site.each_context(request),
        "title": title,
        "customer": customer,
        "customer_name": customer_name,
        "customer_phone": masker.phone(str(customer.phone or "")),
        "customer_email": masker.email(customer.email),
        "customer_url": customer_url,
        "loan": loan,
        "loans": loans,
        "standings": standings,
        "consent": _consent(customer, loans),
        "promises": promise_counts(customer) if user.has_perm(PROMISES) else None,
        "next_contact": next_planned_contact(customer, now) if user.has_perm(MESSAGES) else None,
        "next_call": next_call,
        "rows": rows,
        "page_obj": page,
        "paginator": paginator,
        "filters": filters,
        "filter_query": query,
        "statuses": NotificationLog.Status.choices,
        "show_choices": SHOW_CHOICES,
        "unmasked": masker.unmasked,
        "opts": Customer._meta,
    }
    return TemplateResponse(request, "backoffice/customer_page.html", context)


def _may_open(user) -> bool:
    return any(user.has_perm(p) for p in PAGE_PERMISSIONS)


def customer_page_view(request: HttpRequest, customer_id: int) -> HttpResponse:
    """One customer at a glance, their whole timeline across all their loans."""
    if not _may_open(request.user):
        raise PermissionDenied
    customer = get_object_or_404(Customer.objects.select_related("tier"), pk=customer_id)
    return _render(request, customer=customer, loan=None)


def loan_page_view(request: HttpRequest, loan_id: int) -> HttpResponse:
    """The customer page of a loan's customer, its timeline narrowed to what was about that loan."""
    if not _may_open(request.user):
        raise PermissionDenied
    loan = get_object_or_404(Loan.objects.select_related("customer__tier"), pk=loan_id)
    return _render(request, customer=loan.customer, loan=loan)
