"""Planning: the rule contacts of each customer's local day, and the one place contacts are inserted.

- ``plan_contacts(now)`` (pipeline step "plan") turns the active ``ReminderRule`` rows into ``NotificationLog``
  rows for the local day of each customer that holds ``now``, one per rule listing every loan due that day.
- ``save_plan_groups`` inserts planned contacts (``PlanGroup``) or extends the ones not yet sent; event notices
  (``notifications.notices``) and fallbacks go through it too.
- ``replan_after_tier_change`` cancels what the old tier planned and plans the day again under the new one.

Every new contact is written to the audit trail as ``notifications.contact.planned``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef
from django.utils import timezone

from core.audit import Event, append_events
from core.bulk import bulk_update_rows, insert_rows
from loans.locations import locate
from loans.models import Customer, Installment, Loan, PolicyVersion

from . import compliance
from .arms import ArmRules
from .cancelling import cancel_pending
from .models import NotificationItem, NotificationLog, ReminderRule

Status = NotificationLog.Status
Reason = NotificationLog.Reason

PLANNER_ACTOR = "job:plan_contacts"
# Contacts the planner makes from rules carry this dedupe prefix (event notices carry the caller's key).
RULE_KEY_PREFIX = "rem:"
PLAN_CHUNK = 1000
LOG_TYPE = NotificationLog._meta.label


def rule_dedupe_key(customer_id: int, due_date: dt.date, kind: str, channel: str, offset_days: int) -> str:
    """What makes a rule's contact unique. The tier is not part of it: after a tier change a contact already
    sent is not sent again under the new tier; pending ones are cancelled and their key freed (see
    ``cancel_pending``), so the new tier's rules can plan them again."""
    return f"{RULE_KEY_PREFIX}{customer_id}:{due_date.isoformat()}:{kind}:{channel}:{offset_days:+d}"


def local_send_time(day: dt.date, send_time: dt.time, tz_name: str) -> dt.datetime:
    """The UTC moment of the local wall-clock ``send_time`` on ``day`` (a time in a DST gap moves forward)."""
    return dt.datetime.combine(day, send_time, tzinfo=zoneinfo.ZoneInfo(tz_name)).astimezone(dt.UTC)


def notice_dedupe_key(prefix: str, customer_id: int, local_day: dt.date, kind: str, channel: str) -> str:
    """What makes an event notice unique: its source (``prefix``), the customer, their local day, the kind and the
    channel. Every notice of one source, kind and channel for a customer's day is ONE contact listing each loan,
    as a rule's reminder lists every loan due the same day (the weekly cap can never cost a loan its notice)."""
    return f"{prefix}{customer_id}:{local_day.isoformat()}:{kind}:{channel}"


def planned_send_time(
    day: dt.date, send_time: dt.time, tz_name: str, location, book: compliance.RulesBook
) -> dt.datetime:
    """When a rule's contact is planned: its local ``send_time`` on ``day`` in the customer's calendar zone, moved
    to the next moment the contact window is open in every zone the customer may be in (the dispatcher checks the
    same window: planning and sending agree). Kept as is when the windows never overlap (the dispatcher then holds
    the contact back)."""
    at = local_send_time(day, send_time, tz_name)
    opening = compliance.next_opening(at, location.zones, book.for_location(location).window)
    return opening or at


@dataclass
class PlanGroup:
    """One contact to plan (a rule's reminder or an event notice) and the instalments it lists: the planner and
    the notices share it, so both consolidate a customer's loans into one message the same way."""

    customer_id: int
    tier_id: int | None
    channel: str
    kind: str
    due_date: dt.date | None
    offset_days: int | None
    scheduled_for: dt.datetime
    rule_id: int | None = None
    # The policy version the contact is decided under; left None, the tier's current version.
    policy_version_id: int | None = None
    installment_ids: list[int] = field(default_factory=list)
    # What else the planned event says about the contact (a fallback names the contact it replaces).
    details: dict[str, Any] = field(default_factory=dict)
    loan_refs: list[str] = field(default_factory=list)

    def add(self, installment_ids: Iterable[int], loan_refs: Iterable[str]) -> None:
        self.installment_ids.extend(i for i in installment_ids if i not in self.installment_ids)
        self.loan_refs.extend(r for r in loan_refs if r not in self.loan_refs)


def plan_contacts(
    now: dt.datetime,
    *,
    customer_ids: Iterable[int] | None = None,
    customer_id_range: tuple[int, int] | None = None,
) -> dict:
    """Plan the rule contacts of each customer's local day holding ``now`` (pipeline step "plan").

    For every active rule of the customer's tier with offset ``d``, the customer's unpaid instalments of active
    loans due on ``local_day - d`` become ONE ``NotificationLog`` per rule (so per channel and kind) listing
    every loan, scheduled at the rule's local send time. Days already past are never back-filled. Planning again
    adds nothing (``dedupe_key`` is unique). ``customer_ids`` restricts planning to those customers,
    ``customer_id_range`` (low inclusive, high exclusive) to one chunk of the book (see backoffice.tasks).

    Set-based: a fixed number of queries per time-zone date and per chunk of ``PLAN_CHUNK`` contacts, whatever
    the size of the loan book. Writes ``notifications.contact.planned`` for each new contact.
    An instalment that appeared after its day was planned (a loan loaded later, due the same day) joins the
    customer's contact while it is not sent yet (``notifications.contact.extended``).
    Returns ``{"planned": n, "customers": m, "already_planned": k}`` (and ``"extended"`` when contacts grew).
    """
    totals = Counter(planned=0, customers=0, already_planned=0)
    book = compliance.RulesBook.load()
    rules_by_tier: dict[int, list[ReminderRule]] = defaultdict(list)
    rules = ReminderRule.objects.filter(is_active=True).select_related("tier").order_by("id")
    # Each tier's current policy version, read with its rules: the version the day's contacts are decided under.
    rules = rules.annotate(policy_version_id=PolicyVersion.objects.newest_of_tier(OuterRef("tier")))
    for rule in rules:
        # A rule that no longer suits its tier's grace period (the period was changed after the rule was
        # written) is left out: inside the grace period only grace reminders go out.
        if rule.fits_grace_period(rule.tier.grace_period_days):
            rules_by_tier[rule.tier_id].append(rule)
    arms = ArmRules.load(rules_by_tier)
    if not arms.tier_ids:
        return dict(totals)
    offsets = arms.offsets()

    customers = Customer.objects.filter(tier_id__in=arms.tier_ids, loans__status=Loan.Status.ACTIVE)
    if customer_ids is not None:
        customers = customers.filter(id__any_of=list(customer_ids))
    if customer_id_range is not None:
        customers = customers.filter(id__gte=customer_id_range[0], id__lt=customer_id_range[1])
    zones_by_day: dict[dt.date, list[str]] = defaultdict(list)
    for tz_name in customers.order_by().values_list("timezone", flat=True).distinct():
        zones_by_day[now.astimezone(zoneinfo.ZoneInfo(tz_name)).date()].append(tz_name)

    planned_customers: set[int] = set()
    for local_day, tz_names in sorted(zones_by_day.items()):
        rows = (
            arms.with_arms(Installment.objects.unpaid())
            .filter(
                due_date__in=sorted({local_day - dt.timedelta(days=d) for d in offsets}),
                loan__status=Loan.Status.ACTIVE,
                loan__legal_hold=False,  # a loan under legal hold is never planned
                loan__customer__timezone__in=tz_names,
                loan__customer__tier_id__in=arms.tier_ids,
            )
            .order_by("loan__customer_id", "due_date", "loan__ref", "seq")
            .values(
                "id",
                "due_date",
                "loan__ref",
                "loan__customer_id",
                "loan__customer__tier_id",
                "loan__customer__timezone",
                "loan__customer__timezone_source",
                "loan__customer__phone",
                *arms.row_fields(),
            )
        )
        if customer_ids is not None:
            rows = rows.filter(loan__customer_id__any_of=list(customer_ids))
        if customer_id_range is not None:
            rows = rows.filter(
                loan__customer_id__gte=customer_id_range[0], loan__customer_id__lt=customer_id_range[1]
            )
        groups: dict[str, PlanGroup] = {}
        current_customer = None
        for row in rows.iterator(chunk_size=PLAN_CHUNK):
            customer_id = row["loan__customer_id"]
            # A customer's instalments are contiguous (ordered by customer): flush only between customers,
            # so all their loans due the same day land in the same contact.
            if customer_id != current_customer and len(groups) >= PLAN_CHUNK:
                save_plan_groups(groups, now, totals, planned_customers)
                groups = {}
            current_customer = customer_id
            offset = (local_day - row["due_date"]).days
            for rule in arms.rules_for(row["loan__customer__tier_id"], row):
                if rule.offset_days != offset:
                    continue
                key = rule_dedupe_key(customer_id, row["due_date"], rule.kind, rule.channel, rule.offset_days)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = PlanGroup(
                        customer_id=customer_id,
                        tier_id=row["loan__customer__tier_id"],
                        channel=rule.channel,
                        kind=rule.kind,
                        due_date=row["due_date"],
                        offset_days=rule.offset_days,
                        scheduled_for=planned_send_time(
                            local_day,
                            rule.send_time,
                            row["loan__customer__timezone"],
                            locate(
                                stored_zone=row["loan__customer__timezone"]
                                if row["loan__customer__timezone_source"] == Customer.TimezoneSource.GIVEN
                                else "",
                                phone=row["loan__customer__phone"] or "",
                                default_zone=settings.TIME_ZONE,
                            ),
                            book,
                        ),
                        rule_id=rule.id,
                        policy_version_id=getattr(rule, "policy_version_id", None),
                    )
                group.add([row["id"]], [row["loan__ref"]])
        if groups:
            save_plan_groups(groups, now, totals, planned_customers)
    totals["customers"] = len(planned_customers)
    return dict(totals)


def save_plan_groups(
    by_key: dict[str, PlanGroup],
    now: dt.datetime,
    totals: Counter,
    planned_customers: set[int],
    actor: str = PLANNER_ACTOR,
) -> None:
    """Plan the contacts of ``by_key`` (dedupe key -> group), the one place contacts are inserted: a key not
    planned yet becomes a row with its items (``notifications.contact.planned``); a key already planned and not
    yet sent takes in the instalments it lacks (``notifications.contact.extended``); a key already sent or
    held back adds nothing."""
    with transaction.atomic():
        existing_rows = list(
            NotificationLog.objects.filter(dedupe_key__any_of=list(by_key)).values_list(
                "dedupe_key", "id", "status", "claimed_until", "loan_refs"
            )
        )
        existing = {row[0] for row in existing_rows}
        new = {key: g for key, g in by_key.items() if key not in existing}
        totals["already_planned"] += len(existing)
        waiting = [
            (id_, by_key[key], loan_refs)
            for key, id_, status, claimed_until, loan_refs in existing_rows
            if status in NotificationLog.PENDING_STATUSES and (claimed_until is None or claimed_until <= now)
        ]
        if waiting:
            _add_late_installments(waiting, now, totals, actor)
        if not new:
            return
        unversioned = {g.tier_id for g in new.values() if g.policy_version_id is None and g.tier_id}
        if unversioned:
            current = PolicyVersion.objects.latest_ids(unversioned)
            for g in new.values():
                if g.policy_version_id is None and g.tier_id:
                    g.policy_version_id = current.get(g.tier_id)
        insert_rows(
            NotificationLog,
            [
                "customer",
                "tier",
                "policy_version",
                "channel",
                "kind",
                "due_date",
                "offset_days",
                "scheduled_for",
                "loan_refs",
                "dedupe_key",
            ],
            [
                (
                    g.customer_id,
                    g.tier_id,
                    g.policy_version_id,
                    g.channel,
                    g.kind,
                    g.due_date,
                    g.offset_days,
                    g.scheduled_for,
                    ",".join(g.loan_refs)[:500],
                    key,
                )
                for key, g in new.items()
            ],
            ignore_conflicts=True,
        )
        _attach_and_audit(new, now, actor, planned_customers, totals)


def _add_late_installments(
    waiting: list[tuple[int, PlanGroup, str]], now: dt.datetime, totals: Counter, actor: str = PLANNER_ACTOR
) -> None:
    """Add to contacts planned earlier and not yet sent the instalments that appeared since (a loan loaded after
    the day was planned, due the same day): the one message still lists every loan, so the weekly cap can never
    cost that loan its reminder. Writes ``notifications.contact.extended`` for each contact that grew."""
    ids = [id_ for id_, _group, _refs in waiting]
    have = set(
        NotificationItem.objects.filter(notification_id__any_of=ids).values_list(
            "notification_id", "installment_id"
        )
    )
    items, grown, events = [], [], []
    for id_, group, loan_refs in waiting:
        added = [i for i in group.installment_ids if (id_, i) not in have]
        if not added:
            continue
        items.extend((id_, i) for i in added)
        refs = [r for r in loan_refs.split(",") if r]
        refs += [r for r in group.loan_refs if r not in refs]
        grown.append(NotificationLog(id=id_, loan_refs=",".join(refs)[:500], updated_at=timezone.now()))
        events.append(
            Event(
                action="notifications.contact.extended",
                actor=actor,
                object_type=LOG_TYPE,
                object_id=str(id_),
                at=now,
                before={"loan_refs": loan_refs},
                after={
                    "customer_id": group.customer_id,
                    "due_date": group.due_date,
                    "added_installment_ids": added,
                    "loan_refs": grown[-1].loan_refs,
                    "rule_id": group.rule_id,
                },
            )
        )
    if not items:
        return
    insert_rows(NotificationItem, ["notification", "installment"], items, ignore_conflicts=True)
    bulk_update_rows(grown, ["loan_refs", "updated_at"], batch_size=500)
    append_events(events)
    totals["extended"] += len(grown)


def _attach_and_audit(
    new: dict[str, PlanGroup], now: dt.datetime, actor: str, planned_customers: set[int], totals: Counter
):
    """Items and audit events for the contacts just inserted under the keys of ``new``."""
    rows = NotificationLog.objects.filter(dedupe_key__any_of=list(new)).values(
        "id",
        "dedupe_key",
        "customer_id",
        "channel",
        "kind",
        "due_date",
        "offset_days",
        "scheduled_for",
        "loan_refs",
        "tier_id",
        "policy_version_id",
    )
    items, events = [], []
    for row in rows:
        group = new[row["dedupe_key"]]
        items.extend((row["id"], i) for i in group.installment_ids)
        planned_customers.add(row["customer_id"])
        events.append(
            Event(
                action="notifications.contact.planned",
                actor=actor,
                object_type=LOG_TYPE,
                object_id=str(row["id"]),
                at=now,
                after={
                    "status": Status.PLANNED,
                    "reason": "",
                    "customer_id": row["customer_id"],
                    "channel": row["channel"],
                    "kind": row["kind"],
                    "due_date": row["due_date"],
                    "offset_days": row["offset_days"],
                    "scheduled_for": row["scheduled_for"],
                    "loan_refs": row["loan_refs"],
                    "tier_id": row["tier_id"],
                    "policy_version_id": row["policy_version_id"],
                    "installment_ids": group.installment_ids,
                    "rule_id": group.rule_id,
                    **group.details,
                },
            )
        )
    insert_rows(NotificationItem, ["notification", "installment"], items, ignore_conflicts=True)
    append_events(events)
    totals["planned"] += len(events)


def replan_after_tier_change(
    changes: Iterable[tuple[int, int | None, int | None]], at: dt.datetime, actor: str = "system"
) -> dict:
    """Re-plan the contacts not yet sent of customers who moved tier (receiver of ``loans.signals.tier_changed``).

    ``changes`` are ``(customer_id, old_tier_id, new_tier_id)``. The rule contacts still pending that were not
    planned under the customer's new tier are cancelled with reason ``tier_changed`` (their dedupe keys are
    freed), then the customers' current local day is planned again under the new tier's rules; a contact
    already sent is not sent again. Writes ``notifications.contact.cancelled`` / ``.planned``. Returns counts.
    """
    by_new_tier: dict[int | None, list[int]] = defaultdict(list)
    details = {}
    for customer_id, old, new in changes:
        by_new_tier[new].append(customer_id)
        details[customer_id] = {"old_tier_id": old, "new_tier_id": new}
    cancelled = sum(
        cancel_pending(
            reason=Reason.TIER_CHANGED,
            actor=actor,
            at=at,
            customer_ids=customer_ids,
            dedupe_prefix=RULE_KEY_PREFIX,
            except_tier_id=new_tier,
            details_by_customer=details,
        )
        for new_tier, customer_ids in by_new_tier.items()
    )
    result = plan_contacts(at, customer_ids=sorted({c for ids in by_new_tier.values() for c in ids}))
    return {"cancelled": cancelled, **result}
