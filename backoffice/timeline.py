"""The contact timeline: every planned contact of a customer (or of one loan) and its fate, on one screen.

"Why did this customer not get the SMS for the second loan?" is answered here: each row shows the loans the
contact covered, its status and reason code in plain words, the message as rendered, the delivery receipt
and the audit events written about it. Personal data is masked unless the user may see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from backoffice.masking import Masker, known_of, masker_for
from backoffice.models import AuditEvent
from loans.models import Customer, Loan, Payment
from notifications.choices import Channel, Kind
from notifications.models import NotificationLog

PER_PAGE = 50
VIEW_PERMISSION = "notifications.view_notificationlog"
LOG_OBJECT_TYPE = (
    NotificationLog._meta.label
)  # "notifications.NotificationLog", as backoffice.audit writes it


@dataclass
class TimelineEntry:
    """One contact as the timeline shows it (already masked when the viewer may not see personal data)."""

    log: NotificationLog
    channel: str
    kind: str
    status: str
    reason: str
    scheduled_local: Any
    scheduled_utc: Any
    sent_local: Any
    sent_utc: Any
    delivered_local: Any
    loan_refs: list[str]
    destination: str
    subject: str
    body: str
    last_error: str
    admin_url: str = ""
    audit_events: list[dict[str, Any]] = field(default_factory=list)
    # The chain of a failed message and the next channel tried (notifications.notices.plan_fallbacks).
    fallback_of: int | None = None
    fallback_id: int | None = None


def timeline_queryset(
    *, customer: Customer | None = None, loan: Loan | None = None
) -> QuerySet[NotificationLog]:
    """The contacts of ``customer`` across all their loans, or those that covered an instalment of ``loan``
    (through NotificationItem), newest first. Raises ValueError when neither is given."""
    if loan is not None:
        qs = NotificationLog.objects.filter(items__installment__loan=loan).distinct()
    elif customer is not None:
        qs = NotificationLog.objects.filter(customer=customer)
    else:
        raise ValueError("Give a customer or a loan.")
    return qs.order_by("-scheduled_for", "-id")


def _label(choices, code: str) -> str:
    try:
        return str(choices(code).label)
    except ValueError:
        return code


def _json(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def audit_events_for(logs: list[NotificationLog]) -> dict[str, list[AuditEvent]]:
    """The audit events about these contacts, by log id as a string (1 query whatever the number of logs)."""
    by_log: dict[str, list[AuditEvent]] = {}
    if not logs:
        return by_log
    events = AuditEvent.objects.filter(
        object_type=LOG_OBJECT_TYPE, object_id__in=[str(log.pk) for log in logs]
    ).order_by("seq")
    for event in events:
        by_log.setdefault(event.object_id, []).append(event)
    return by_log


def _chain_link(events: list[AuditEvent], action: str, key: str) -> int | None:
    """The contact id ``key`` names in the first ``action`` event about a contact (None without one)."""
    for event in events:
        if event.action == action and isinstance(event.after, dict) and event.after.get(key):
            return event.after[key]
    return None


def _change_url_pattern() -> str | None:
    try:
        return reverse("admin:notifications_notificationlog_change", args=[0])
    except NoReverseMatch:
        return None


def timeline_entries(
    logs: list[NotificationLog], customer: Customer, *, masker: Masker
) -> list[TimelineEntry]:
    """Rows for ``logs`` of ``customer``: times in the customer's zone and in UTC, labels in the active language,
    personal data as ``masker`` shows it, and the audit events behind each row (one query for them all)."""
    zone = customer.zone
    pii = known_of(customer)
    events = audit_events_for(logs)
    change_url = _change_url_pattern()

    def masked(text: str) -> str:
        return masker.text(text, **pii)

    rows = []
    for log in logs:
        about = events.get(str(log.pk), [])
        rows.append(
            TimelineEntry(
                log=log,
                channel=_label(Channel, log.channel),
                kind=_label(Kind, log.kind),
                status=_label(NotificationLog.Status, log.status),
                reason=_label(NotificationLog.Reason, log.reason) if log.reason else "",
                scheduled_local=log.scheduled_for.astimezone(zone),
                scheduled_utc=log.scheduled_for,
                sent_local=log.sent_at.astimezone(zone) if log.sent_at else None,
                sent_utc=log.sent_at,
                delivered_local=log.delivered_at.astimezone(zone) if log.delivered_at else None,
                loan_refs=[r.strip() for r in log.loan_refs.split(",") if r.strip()],
                destination=masker.destination(log.destination),
                subject=masked(log.subject),
                body=masked(log.body),
                last_error=masked(log.last_error),
                admin_url=change_url.replace("/0/", f"/{log.pk}/") if change_url else "",
                audit_events=[
                    {
                        "seq": e.seq,
                        "at": e.at,
                        "actor": e.actor,
                        "action": e.action,
                        "before": _json(masker.value(e.before, **pii)),
                        "after": _json(masker.value(e.after, **pii)),
                    }
                    for e in about
                ],
                fallback_of=_chain_link(about, "notifications.contact.planned", "fallback_of"),
                fallback_id=_chain_link(about, "notifications.contact.fell_back", "fallback_id"),
            )
        )
    return rows


PAYMENTS_SHOWN = 50


def payments_of(*, customer: Customer, loan: Loan | None = None) -> list[dict[str, Any]]:
    """The latest payments of ``loan`` (or of all the customer's loans) with the instalments each one paid and
    the part kept as credit, times in the customer's zone (2 queries)."""
    qs = (
        Payment.objects.filter(loan=loan)
        if loan is not None
        else Payment.objects.filter(loan__customer=customer)
    )
    payments = list(
        qs.select_related("loan")
        .prefetch_related("allocations__installment")
        .order_by("-received_at", "-pk")[:PAYMENTS_SHOWN]
    )
    zone = customer.zone
    rows = []
    for p in payments:
        allocations = sorted(p.allocations.all(), key=lambda a: a.installment.seq)
        rows.append(
            {
                "ref": p.ref,
                "loan_ref": p.loan.ref,
                "received_local": p.received_at.astimezone(zone),
                "amount": p.amount,
                "source": p.get_source_display(),
                "allocations": [(a.installment.seq, a.amount) for a in allocations],
                "credit": p.amount - sum((a.amount for a in allocations), Decimal("0")),
            }
        )
    return rows


def _filtered(
    qs: QuerySet[NotificationLog], request: HttpRequest
) -> tuple[QuerySet[NotificationLog], dict[str, str]]:
    filters = {}
    status = request.GET.get("status", "")
    if status in NotificationLog.Status.values:
        qs, filters["status"] = qs.filter(status=status), status
    channel = request.GET.get("channel", "")
    if channel in Channel.values:
        qs, filters["channel"] = qs.filter(channel=channel), channel
    return qs, filters


def _render(request: HttpRequest, *, customer: Customer, loan: Loan | None, qs) -> HttpResponse:
    masker = masker_for(request)
    qs, filters = _filtered(qs, request)
    paginator = Paginator(qs, PER_PAGE)
    page: Page = paginator.get_page(request.GET.get("page"))
    entries = timeline_entries(list(page.object_list), customer, masker=masker)
    loans = list(customer.loans.order_by("ref").values("id", "ref", "status"))
    customer_name = masker.name(customer.name)
    try:
        customer_url = reverse("admin:loans_customer_change", args=[customer.pk])
    except NoReverseMatch:
        customer_url = ""
    title = (
        _("Contact timeline of loan %(loan)s") % {"loan": loan.ref}
        if loan
        else _("Contact timeline of %(customer)s") % {"customer": f"{customer.ref} · {customer_name}"}
    )
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    context = {
        **admin.site.each_context(request),
        "title": title,
        "customer": customer,
        "customer_name": customer_name,
        "customer_url": customer_url,
        "loan": loan,
        "loans": loans,
        "entries": entries,
        "page_obj": page,
        "paginator": paginator,
        "filters": filters,
        "filter_query": query,
        "statuses": NotificationLog.Status.choices,
        "channels": Channel.choices,
        "unmasked": masker.unmasked,
        "payments": payments_of(customer=customer, loan=loan),
        "opts": Customer._meta,
    }
    return TemplateResponse(request, "backoffice/timeline.html", context)


def customer_timeline_view(request: HttpRequest, customer_id: int) -> HttpResponse:
    """Every contact of one customer across all their loans (needs the view permission on the log)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    customer = get_object_or_404(Customer, pk=customer_id)
    return _render(request, customer=customer, loan=None, qs=timeline_queryset(customer=customer))


def loan_timeline_view(request: HttpRequest, loan_id: int) -> HttpResponse:
    """The contacts that covered an instalment of one loan (needs the view permission on the log)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    loan = get_object_or_404(Loan.objects.select_related("customer"), pk=loan_id)
    return _render(request, customer=loan.customer, loan=loan, qs=timeline_queryset(loan=loan))


__all__ = [
    "TimelineEntry",
    "audit_events_for",
    "customer_timeline_view",
    "loan_timeline_view",
    "payments_of",
    "timeline_entries",
    "timeline_queryset",
]
