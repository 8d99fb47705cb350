"""Policy preview: what a tier's proposed rules, grace period, cap, channel order or ladder would do, side by
side with the current policy, on a sample of that tier's real loans over a date range. Writes nothing.

Why a pure simulation and not the engine inside a rolled-back transaction: the real dispatcher claims rows
(``FOR UPDATE SKIP LOCKED``) and every decision takes the audit chain's head lock, so a preview run inside a
transaction would hold up the real planner, dispatcher and every audited write for as long as it runs (on
SQLite the whole database), and the dispatcher would also process real customers' due contacts. The
simulation below instead replays the engine's decisions in memory, reusing its pieces where they are pure:
the contact window and holidays (``notifications.compliance``), the weekly cap test, the template choice
(``pick_template``) and the local send time. It follows the same order of gates as
``notifications.dispatch.dispatch_due``: paid -> do not contact -> opted out (next channel of the order) ->
no destination -> outside the window (deferred to the next opening, then checked again) -> weekly cap ->
no template -> sent.

Assumptions, shown on the page: an instalment is paid when the book says it was (``paid_at``), so a range in
the past replays what happened and a future range assumes nobody pays; contacts sent in the 7 days before the
range count toward the cap; every contact the engine would send is taken as sent (providers do not fail);
the ladder fires a step once per loan on the first day its DPD (from the loan's oldest unpaid instalment)
reaches the step and is past the grace period.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import zoneinfo
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from loans.models import CreditTier, Customer, Installment, Loan
from notifications import compliance
from notifications.choices import Channel, Kind
from notifications.gates import pick_template
from notifications.models import ContactPolicy, NotificationLog, ReminderRule
from notifications.planning import planned_send_time
from notifications.rendering import template_index

MAX_RANGE_DAYS = 62
MAX_SAMPLE = 2000
MESSAGING = (Channel.SMS.value, Channel.EMAIL.value, Channel.PUSH.value)
LADDER_ACTIONS = ("sms", "email", "push", "call_task", "agency", "legal")
Reason = NotificationLog.Reason


@dataclass(frozen=True)
class RuleSpec:
    offset_days: int
    channel: str
    kind: str
    send_time: dt.time


@dataclass(frozen=True)
class StepSpec:
    min_dpd: int
    action: str
    stage: str = ""


@dataclass(frozen=True)
class Policy:
    """What decides a tier's contacts; ``Policy.of(tier)`` is the saved one."""

    grace_period_days: int
    max_contacts_per_week: int
    channel_order: tuple[str, ...]
    rules: tuple[RuleSpec, ...]
    ladder: tuple[StepSpec, ...]

    @classmethod
    def of(cls, tier: CreditTier) -> Policy:
        """The tier's saved policy (2 queries: its active rules and its ladder)."""
        rules = tuple(
            RuleSpec(r.offset_days, r.channel, r.kind, r.send_time)
            for r in ReminderRule.objects.filter(tier=tier, is_active=True).order_by(
                "offset_days", "channel", "id"
            )
        )
        return cls(
            grace_period_days=tier.grace_period_days,
            max_contacts_per_week=tier.max_contacts_per_week,
            channel_order=tuple(tier.channels),
            rules=rules,
            ladder=_saved_ladder(tier),
        )

    def changed(self, **changes) -> Policy:
        """A copy with the given fields replaced (None keeps the current value)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _saved_ladder(tier: CreditTier) -> tuple[StepSpec, ...]:
    from django.apps import apps

    try:
        EscalationStep = apps.get_model("collections", "EscalationStep")
    except LookupError:
        return ()
    return tuple(
        StepSpec(s.min_dpd, s.action, s.stage)
        for s in EscalationStep.objects.filter(tier=tier).order_by("min_dpd", "action", "id")
    )


# --- parsing the operator's proposal ---------------------------------------------------------------------
def parse_rules(text: str) -> tuple[RuleSpec, ...]:
    """Lines ``offset,channel,kind,HH:MM`` (e.g. ``-3,sms,pre_due,10:00``). Raises ValidationError naming
    the line."""
    rules = []
    for number, line in _lines(text):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            raise ValidationError(_("Rule line %(n)s: write offset,channel,kind,HH:MM.") % {"n": number})
        offset, channel, kind, at = parts
        try:
            offset_days = int(offset)
            send_time = dt.time.fromisoformat(at)
        except ValueError as exc:
            raise ValidationError(_("Rule line %(n)s: %(error)s") % {"n": number, "error": exc}) from exc
        if channel not in MESSAGING:
            raise ValidationError(
                _("Rule line %(n)s: unknown channel “%(v)s”.") % {"n": number, "v": channel}
            )
        if kind not in Kind.values:
            raise ValidationError(_("Rule line %(n)s: unknown kind “%(v)s”.") % {"n": number, "v": kind})
        if not -60 <= offset_days <= 60:
            raise ValidationError(_("Rule line %(n)s: the offset must lie within 60 days.") % {"n": number})
        rules.append(RuleSpec(offset_days, channel, kind, send_time))
    return tuple(rules)


def parse_ladder(text: str) -> tuple[StepSpec, ...]:
    """Lines ``min_dpd,action[,stage]`` (e.g. ``15,call_task,call``). Raises ValidationError naming the line."""
    steps = []
    for number, line in _lines(text):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) not in (2, 3):
            raise ValidationError(_("Ladder line %(n)s: write min_dpd,action[,stage].") % {"n": number})
        try:
            min_dpd = int(parts[0])
        except ValueError as exc:
            raise ValidationError(_("Ladder line %(n)s: %(error)s") % {"n": number, "error": exc}) from exc
        if min_dpd < 1 or parts[1] not in LADDER_ACTIONS:
            raise ValidationError(
                _("Ladder line %(n)s: DPD from 1, action one of %(a)s.")
                % {"n": number, "a": ", ".join(LADDER_ACTIONS)}
            )
        steps.append(StepSpec(min_dpd, parts[1], parts[2] if len(parts) == 3 else ""))
    return tuple(steps)


def format_rules(rules: tuple[RuleSpec, ...]) -> str:
    return "\n".join(f"{r.offset_days},{r.channel},{r.kind},{r.send_time:%H:%M}" for r in rules)


def format_ladder(ladder: tuple[StepSpec, ...]) -> str:
    return "\n".join(f"{s.min_dpd},{s.action},{s.stage}".rstrip(",") for s in ladder)


def _lines(text: str):
    for number, line in enumerate((text or "").splitlines(), start=1):
        if line.strip() and not line.strip().startswith("#"):
            yield number, line.strip()


# --- the sample ------------------------------------------------------------------------------------------
@dataclass
class _Inst:
    id: int
    loan_id: int
    loan_ref: str
    due_date: dt.date
    paid_at: dt.datetime | None

    def is_unpaid_at(self, at: dt.datetime) -> bool:
        return self.paid_at is None or self.paid_at > at


@dataclass
class Sample:
    customers: list[Customer]
    installments: dict[int, list[_Inst]]  # by customer id
    sent_before: dict[int, list[dt.datetime]]  # real sends in the 7 days before the range, by customer id

    @property
    def loan_count(self) -> int:
        return len({i.loan_id for insts in self.installments.values() for i in insts})


def load_sample(tier: CreditTier, start: dt.date, end: dt.date, size: int) -> Sample:
    """The first ``size`` customers (by id) of ``tier`` with an active loan, their instalments of active loans
    unpaid when the range starts and due before it ends (plus two months for pre-due rules), and their sends
    of the 7 days before it (3 queries)."""
    customers = list(
        Customer.objects.filter(tier=tier, loans__status=Loan.Status.ACTIVE).distinct().order_by("id")[:size]
    )
    ids = [c.id for c in customers]
    range_start = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC) - dt.timedelta(days=1)
    installments: dict[int, list[_Inst]] = defaultdict(list)
    rows = (
        Installment.objects.filter(loan__customer_id__in=ids, loan__status=Loan.Status.ACTIVE)
        .filter(Q(paid_at__isnull=True) | Q(paid_at__gte=range_start))
        .filter(due_date__lte=end + dt.timedelta(days=61))
        .order_by("loan__customer_id", "due_date", "loan__ref", "seq")
        .values_list("id", "loan_id", "loan__ref", "loan__customer_id", "due_date", "paid_at")
    )
    for inst_id, loan_id, ref, customer_id, due, paid_at in rows:
        installments[customer_id].append(_Inst(inst_id, loan_id, ref, due, paid_at))
    sent_before: dict[int, list[dt.datetime]] = defaultdict(list)
    for customer_id, sent_at in (
        NotificationLog.objects.counted_for_cap()
        .filter(
            customer_id__in=ids, sent_at__gte=range_start - compliance.CAP_WINDOW, sent_at__lt=range_start
        )
        .values_list("customer_id", "sent_at")
    ):
        sent_before[customer_id].append(sent_at)
    return Sample(customers, dict(installments), dict(sent_before))


# --- the simulation --------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a policy would do on the sample over the range."""

    planned: int = 0
    sent: int = 0
    sent_by_channel: Counter = field(default_factory=Counter)
    held_back: Counter = field(default_factory=Counter)  # (status, reason) -> contacts
    deferrals: int = 0
    escalations: Counter = field(default_factory=Counter)  # action -> loans
    per_day: dict[dt.date, Counter] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def held_back_total(self) -> int:
        return sum(self.held_back.values())


@dataclass(order=True)
class _Contact:
    at: dt.datetime
    seq: int
    customer: Customer = field(compare=False)
    rule: RuleSpec = field(compare=False)
    installments: list[_Inst] = field(compare=False)


def simulate(
    policy: Policy, sample: Sample, start: dt.date, end: dt.date, book: compliance.RulesBook, templates
) -> Outcome:
    """Replay the planner, the dispatcher's gates and the ladder for ``policy`` in memory (no query)."""
    outcome = Outcome(
        per_day={start + dt.timedelta(days=i): Counter() for i in range((end - start).days + 1)}
    )
    queue: list[_Contact] = []
    seq = 0
    for customer in sample.customers:
        insts = sample.installments.get(customer.id, [])
        by_due: dict[dt.date, list[_Inst]] = defaultdict(list)
        for inst in insts:
            by_due[inst.due_date].append(inst)
        zone = zoneinfo.ZoneInfo(customer.timezone)
        for day in outcome.per_day:
            plan_moment = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
            for rule in policy.rules:
                # One contact per rule listing every loan due that day that is still unpaid when planning.
                due = [
                    i
                    for i in by_due.get(day - dt.timedelta(days=rule.offset_days), [])
                    if i.is_unpaid_at(plan_moment)
                ]
                if not due:
                    continue
                seq += 1
                at = planned_send_time(day, rule.send_time, customer.timezone, customer.location, book)
                heapq.heappush(queue, _Contact(at, seq, customer, rule, due))
                outcome.planned += 1

    sends: dict[int, list[dt.datetime]] = {cid: list(times) for cid, times in sample.sent_before.items()}
    last_moment = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC) + dt.timedelta(
        days=1
    )
    while queue:
        contact = heapq.heappop(queue)
        status, reason, channel = _decide(contact, policy, book, templates, sends)
        if status == NotificationLog.Status.DEFERRED:
            outcome.deferrals += 1
            location = contact.customer.location
            opening = compliance.next_opening(contact.at, location.zones, book.for_location(location).window)
            if opening is not None and opening < last_moment:
                contact.at = opening
                heapq.heappush(queue, contact)
                continue
            # Never open in every zone: held back, as the dispatcher does.
            status = NotificationLog.Status.DEFERRED if opening else NotificationLog.Status.SUPPRESSED
            reason = Reason.OUTSIDE_CONTACT_WINDOW
        day = contact.at.astimezone(contact.customer.zone).date()
        bucket = outcome.per_day.get(day)
        if status == NotificationLog.Status.SENT:
            sends.setdefault(contact.customer.id, []).append(contact.at)
            outcome.sent += 1
            outcome.sent_by_channel[channel] += 1
            if bucket is not None:
                bucket["sent"] += 1
        else:
            outcome.held_back[(status, reason)] += 1
            if bucket is not None:
                bucket["held_back"] += 1
            if len(outcome.examples) < 20:
                outcome.examples.append(
                    {
                        "customer_ref": contact.customer.ref,
                        "loan_refs": sorted({i.loan_ref for i in contact.installments}),
                        "at": contact.at,
                        "channel": channel,
                        "status": status,
                        "reason": reason,
                    }
                )
    _escalate(policy, sample, start, end, outcome)
    return outcome


def _decide(
    contact: _Contact, policy: Policy, book: compliance.RulesBook, templates, sends
) -> tuple[str, str, str]:
    customer, at, channel = contact.customer, contact.at, contact.rule.channel
    S = NotificationLog.Status
    if not any(i.is_unpaid_at(at) for i in contact.installments):
        return S.CANCELLED, Reason.PAID, channel
    if customer.do_not_contact:
        return S.SUPPRESSED, Reason.DO_NOT_CONTACT, channel
    if customer.is_opted_out(channel):
        fallback = next(
            (
                c
                for c in policy.channel_order
                if c in MESSAGING
                and c != channel
                and not customer.is_opted_out(c)
                and customer.destination(c)
            ),
            None,
        )
        if fallback is None:
            return S.SUPPRESSED, Reason.OPTED_OUT, channel
        channel = fallback
    if not customer.destination(channel):
        return S.SUPPRESSED, Reason.NO_DESTINATION, channel
    location = customer.location
    if not compliance.allowed_at(at, location.zones, book.for_location(location).window):
        return S.DEFERRED, Reason.OUTSIDE_CONTACT_WINDOW, channel
    recent = sum(1 for t in sends.get(customer.id, ()) if at - compliance.CAP_WINDOW < t <= at)
    if compliance.is_over_weekly_cap(recent, policy.max_contacts_per_week):
        return S.SUPPRESSED, Reason.FREQUENCY_CAP, channel
    if (
        pick_template(templates, contact.rule.kind, channel, customer.language, book.policy.default_language)
        is None
    ):
        return S.SUPPRESSED, Reason.NO_TEMPLATE, channel
    return S.SENT, "", channel


def _escalate(policy: Policy, sample: Sample, start: dt.date, end: dt.date, outcome: Outcome) -> None:
    """Each ladder step fires once per loan on the first day in the range its DPD reaches the step, past grace."""
    for customer in sample.customers:
        loans: dict[int, list[_Inst]] = defaultdict(list)
        for inst in sample.installments.get(customer.id, []):
            loans[inst.loan_id].append(inst)
        zone = customer.zone
        for insts in loans.values():
            before = _dpd_on(start - dt.timedelta(days=1), insts, zone)
            fired: set[StepSpec] = {
                s for s in policy.ladder if before >= s.min_dpd and before > policy.grace_period_days
            }
            for day in outcome.per_day:
                dpd = _dpd_on(day, insts, zone)
                if dpd <= policy.grace_period_days:
                    continue
                for step in policy.ladder:
                    if step not in fired and dpd >= step.min_dpd:
                        fired.add(step)
                        outcome.escalations[step.action] += 1
                        outcome.per_day[day]["escalated"] += 1


def _dpd_on(day: dt.date, insts: list[_Inst], zone) -> int:
    """Days past due of a loan at the end of ``day``: from its oldest instalment then due and unpaid."""
    moment = dt.datetime.combine(day, dt.time.max, tzinfo=zone)
    overdue = [i.due_date for i in insts if i.due_date < day and i.is_unpaid_at(moment)]
    return (day - min(overdue)).days if overdue else 0


def preview_policy(
    tier: CreditTier,
    start: dt.date,
    end: dt.date,
    *,
    sample_size: int = 200,
    grace_period_days: int | None = None,
    max_contacts_per_week: int | None = None,
    channel_order: tuple[str, ...] | None = None,
    rules: tuple[RuleSpec, ...] | None = None,
    ladder: tuple[StepSpec, ...] | None = None,
) -> dict[str, Any]:
    """Simulate the tier's current policy and the proposed one (the given fields changed) on the same sample.

    Reads only (about 7 queries whatever the sample size); writes nothing, locks nothing. Raises ValidationError
    for a range longer than ``MAX_RANGE_DAYS``, ending before it starts, or a sample outside 1..``MAX_SAMPLE``.
    Returns ``{"current": Outcome, "proposed": Outcome, "current_policy", "proposed_policy", "sample": {...}}``.
    """
    if end < start:
        raise ValidationError(_("The range ends before it starts."))
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValidationError(_("Preview at most %(n)s days at a time.") % {"n": MAX_RANGE_DAYS})
    if not 1 <= sample_size <= MAX_SAMPLE:
        raise ValidationError(_("The sample holds 1 to %(n)s customers.") % {"n": MAX_SAMPLE})
    current = Policy.of(tier)
    proposed = current.changed(
        grace_period_days=grace_period_days,
        max_contacts_per_week=max_contacts_per_week,
        channel_order=channel_order,
        rules=rules,
        ladder=ladder,
    )
    sample = load_sample(tier, start, end, sample_size)
    # Not ContactPolicy.get(): that creates the row when missing, and a preview writes nothing.
    book = compliance.RulesBook.load(ContactPolicy.objects.filter(id=1).first() or ContactPolicy())
    templates = template_index()
    return {
        "current_policy": current,
        "proposed_policy": proposed,
        "current": simulate(current, sample, start, end, book, templates),
        "proposed": simulate(proposed, sample, start, end, book, templates),
        "sample": {
            "customers": len(sample.customers),
            "loans": sample.loan_count,
            "installments": sum(len(v) for v in sample.installments.values()),
        },
        "start": start,
        "end": end,
    }


__all__ = [
    "Outcome",
    "Policy",
    "RuleSpec",
    "StepSpec",
    "format_ladder",
    "format_rules",
    "parse_ladder",
    "parse_rules",
    "preview_policy",
    "simulate",
]


# --- the admin page on a tier ----------------------------------------------------------------------------
PREVIEW_PERMISSION = "loans.view_credittier"


class PreviewForm(forms.Form):
    start = forms.DateField(label=gettext_lazy("from"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=gettext_lazy("to"), widget=forms.DateInput(attrs={"type": "date"}))
    sample_size = forms.IntegerField(
        label=gettext_lazy("customers in the sample"), min_value=1, max_value=MAX_SAMPLE, initial=200
    )
    grace_period_days = forms.IntegerField(
        label=gettext_lazy("grace period (days)"), min_value=0, max_value=14
    )
    max_contacts_per_week = forms.IntegerField(
        label=gettext_lazy("max contacts per customer in any 7 days"), min_value=1
    )
    channel_order = forms.CharField(label=gettext_lazy("channel order"))
    rules = forms.CharField(
        label=gettext_lazy("reminder rules"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 40}),
        help_text=gettext_lazy("One per line: offset,channel,kind,HH:MM"),
    )
    ladder = forms.CharField(
        label=gettext_lazy("escalation steps"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 40}),
        help_text=gettext_lazy("One per line: min_dpd,action[,stage]"),
    )

    def clean_channel_order(self):
        from loans.models import validate_channel_order

        value = self.cleaned_data["channel_order"]
        validate_channel_order(value)
        return tuple(c.strip() for c in value.split(",") if c.strip())

    def clean_rules(self):
        return parse_rules(self.cleaned_data["rules"])

    def clean_ladder(self):
        return parse_ladder(self.cleaned_data["ladder"])


def _comparison_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    current, proposed = result["current"], result["proposed"]
    rows = [
        {
            "label": _("Contacts planned"),
            "current": current.planned,
            "proposed": proposed.planned,
            "strong": True,
        },
        {"label": _("Sent"), "current": current.sent, "proposed": proposed.sent, "strong": True},
    ]
    for channel in sorted(set(current.sent_by_channel) | set(proposed.sent_by_channel)):
        rows.append(
            {
                "label": "· " + str(Channel(channel).label),
                "current": current.sent_by_channel[channel],
                "proposed": proposed.sent_by_channel[channel],
            }
        )
    rows.append(
        {
            "label": _("Held back"),
            "current": current.held_back_total,
            "proposed": proposed.held_back_total,
            "strong": True,
        }
    )
    for status, reason in sorted(set(current.held_back) | set(proposed.held_back)):
        rows.append(
            {
                "label": f"· {NotificationLog.Status(status).label}: {Reason(reason).label}",
                "code": reason,
                "current": current.held_back[(status, reason)],
                "proposed": proposed.held_back[(status, reason)],
            }
        )
    rows.append(
        {
            "label": _("Times deferred to the next window"),
            "current": current.deferrals,
            "proposed": proposed.deferrals,
        }
    )
    rows.append(
        {
            "label": _("Escalations"),
            "current": sum(current.escalations.values()),
            "proposed": sum(proposed.escalations.values()),
            "strong": True,
        }
    )
    actions = dict(_ladder_action_labels())
    for action in sorted(set(current.escalations) | set(proposed.escalations)):
        rows.append(
            {
                "label": "· " + str(actions.get(action, action)),
                "code": action,
                "current": current.escalations[action],
                "proposed": proposed.escalations[action],
            }
        )
    for row in rows:
        row["delta"] = row["proposed"] - row["current"]
    return rows


def _ladder_action_labels():
    from django.apps import apps

    try:
        return apps.get_model("collections", "EscalationStep").Action.choices
    except LookupError:
        return []


def _day_chart(title: str, outcome: Outcome):
    from backoffice import charts

    days = list(outcome.per_day)
    return charts.bar_chart(
        title,
        [d.strftime("%m-%d") for d in days],
        [
            charts.Series(_("Sent"), [outcome.per_day[d]["sent"] for d in days], "#2e7d32"),
            charts.Series(_("Held back"), [outcome.per_day[d]["held_back"] for d in days], "#f9a825"),
            charts.Series(_("Escalations"), [outcome.per_day[d]["escalated"] for d in days], "#6a1b9a"),
        ],
    )


def tier_preview_view(request: HttpRequest, tier_id: int) -> HttpResponse:
    """GET form on a tier: the proposal (prefilled with the saved policy) and, when run, the comparison."""
    if not request.user.has_perm(PREVIEW_PERMISSION):
        raise PermissionDenied
    tier = get_object_or_404(CreditTier, pk=tier_id)
    current = Policy.of(tier)
    today = timezone.localdate()
    initial = {
        "start": today,
        "end": today + dt.timedelta(days=13),
        "sample_size": 200,
        "grace_period_days": current.grace_period_days,
        "max_contacts_per_week": current.max_contacts_per_week,
        "channel_order": ",".join(current.channel_order),
        "rules": format_rules(current.rules),
        "ladder": format_ladder(current.ladder),
    }
    form = PreviewForm(request.GET if "run" in request.GET else None, initial=initial)
    result = rows = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            result = preview_policy(
                tier,
                data["start"],
                data["end"],
                sample_size=data["sample_size"],
                grace_period_days=data["grace_period_days"],
                max_contacts_per_week=data["max_contacts_per_week"],
                channel_order=data["channel_order"],
                rules=data["rules"],
                ladder=data["ladder"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            rows = _comparison_rows(result)
    try:
        tier_url = reverse("admin:loans_credittier_change", args=[tier.pk])
    except NoReverseMatch:
        tier_url = ""
    context = {
        **admin.site.each_context(request),
        "title": _("Policy preview for tier %(tier)s") % {"tier": str(tier)},
        "tier": tier,
        "tier_url": tier_url,
        "form": form,
        "result": result,
        "rows": rows,
        "current_chart": _day_chart(_("Current policy, per day"), result["current"]) if result else None,
        "proposed_chart": _day_chart(_("Proposed policy, per day"), result["proposed"]) if result else None,
        "opts": CreditTier._meta,
    }
    return TemplateResponse(request, "backoffice/policy_preview.html", context)
