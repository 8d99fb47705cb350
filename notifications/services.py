"""The reminder engine: plan the contacts of each customer's local day, dispatch what is due through the gates.

- ``plan_contacts(now)`` (pipeline step "plan") turns the active ``ReminderRule`` rows into ``NotificationLog``
  rows for the local day of each customer that holds ``now``.
- ``plan_notice(...)`` plans one event-driven contact (auto-debit failed, promise reminder, a ladder message).
- ``dispatch_due(now)`` (pipeline step "dispatch") claims the contacts due by ``now``, checks the compliance
  gates at send time and sends through the channel's backend.
- ``cancel_pending(...)`` cancels contacts not yet sent (payment, tier change).

Every decision is written to the audit trail as ``notifications.contact.<status>`` with its reason and inputs.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import CharField, F, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from backoffice.audit import Event, log_events
from backoffice.bulk import bulk_update_rows
from loans.locations import locate
from loans.models import CreditTier, Customer, Installment, Loan

from . import compliance
from .choices import Channel, Kind
from .destinations import DeadDestination, forget_destinations
from .inbound import unsubscribe_url
from .models import ContactPolicy, NotificationItem, NotificationLog, ReminderRule, ReminderTemplate
from .templating import render

Status = NotificationLog.Status
Reason = NotificationLog.Reason

PLANNER_ACTOR = "job:plan_contacts"
DISPATCHER_ACTOR = "job:dispatch_due"
# Contacts the planner makes from rules carry this dedupe prefix (event notices carry the caller's key).
RULE_KEY_PREFIX = "rem:"
# A claimed row belongs to one worker until its lease lapses (settings.DISPATCH_CLAIM_LEASE_SECONDS); a worker
# that died releases its rows that way.
PLAN_CHUNK = 1000
MESSAGING_CHANNELS = (Channel.SMS.value, Channel.EMAIL.value, Channel.PUSH.value)
LOG_TYPE = NotificationLog._meta.label


# --- planning ----------------------------------------------------------------------------------------------
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
class _PlanGroup:
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
    for rule in ReminderRule.objects.filter(is_active=True).select_related("tier").order_by("id"):
        # A rule that no longer suits its tier's grace period (the period was changed after the rule was
        # written) is left out: inside the grace period only grace reminders go out.
        if rule.fits_grace_period(rule.tier.grace_period_days):
            rules_by_tier[rule.tier_id].append(rule)
    if not rules_by_tier:
        return dict(totals)
    offsets = {rule.offset_days for rules in rules_by_tier.values() for rule in rules}

    customers = Customer.objects.filter(tier_id__in=list(rules_by_tier), loans__status=Loan.Status.ACTIVE)
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
            Installment.objects.unpaid()
            .filter(
                due_date__in=sorted({local_day - dt.timedelta(days=d) for d in offsets}),
                loan__status=Loan.Status.ACTIVE,
                loan__customer__timezone__in=tz_names,
                loan__customer__tier_id__in=list(rules_by_tier),
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
            )
        )
        if apps.is_installed("debt_collection"):
            from debt_collection.models import frozen_loan_ids

            rows = rows.exclude(loan_id__in=frozen_loan_ids())  # a subquery: legal holds are never planned
        if customer_ids is not None:
            rows = rows.filter(loan__customer_id__any_of=list(customer_ids))
        if customer_id_range is not None:
            rows = rows.filter(
                loan__customer_id__gte=customer_id_range[0], loan__customer_id__lt=customer_id_range[1]
            )
        groups: dict[str, _PlanGroup] = {}
        current_customer = None
        for row in rows.iterator(chunk_size=PLAN_CHUNK):
            customer_id = row["loan__customer_id"]
            # A customer's instalments are contiguous (ordered by customer): flush only between customers,
            # so all their loans due the same day land in the same contact.
            if customer_id != current_customer and len(groups) >= PLAN_CHUNK:
                _save_plan_groups(groups, now, totals, planned_customers)
                groups = {}
            current_customer = customer_id
            offset = (local_day - row["due_date"]).days
            for rule in rules_by_tier[row["loan__customer__tier_id"]]:
                if rule.offset_days != offset:
                    continue
                key = rule_dedupe_key(customer_id, row["due_date"], rule.kind, rule.channel, rule.offset_days)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _PlanGroup(
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
                    )
                group.add([row["id"]], [row["loan__ref"]])
        if groups:
            _save_plan_groups(groups, now, totals, planned_customers)
    totals["customers"] = len(planned_customers)
    return dict(totals)


def _save_plan_groups(
    by_key: dict[str, _PlanGroup],
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
        NotificationLog.objects.bulk_create(
            [
                NotificationLog(
                    customer_id=g.customer_id,
                    tier_id=g.tier_id,
                    channel=g.channel,
                    kind=g.kind,
                    due_date=g.due_date,
                    offset_days=g.offset_days,
                    scheduled_for=g.scheduled_for,
                    loan_refs=",".join(g.loan_refs)[:500],
                    dedupe_key=key,
                )
                for key, g in new.items()
            ],
            batch_size=500,
            ignore_conflicts=True,
        )
        _attach_and_audit(new, now, actor, planned_customers, totals)


def _add_late_installments(
    waiting: list[tuple[int, _PlanGroup, str]], now: dt.datetime, totals: Counter, actor: str = PLANNER_ACTOR
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
        items.extend(NotificationItem(notification_id=id_, installment_id=i) for i in added)
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
    NotificationItem.objects.bulk_create(items, batch_size=1000, ignore_conflicts=True)
    bulk_update_rows(grown, ["loan_refs", "updated_at"], batch_size=500)
    log_events(events)
    totals["extended"] += len(grown)


def _attach_and_audit(
    new: dict[str, _PlanGroup], now: dt.datetime, actor: str, planned_customers: set[int], totals: Counter
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
    )
    items, events = [], []
    for row in rows:
        group = new[row["dedupe_key"]]
        items.extend(
            NotificationItem(notification_id=row["id"], installment_id=i) for i in group.installment_ids
        )
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
                    "installment_ids": group.installment_ids,
                    "rule_id": group.rule_id,
                    **group.details,
                },
            )
        )
    NotificationItem.objects.bulk_create(items, batch_size=1000, ignore_conflicts=True)
    log_events(events)
    totals["planned"] += len(events)


def default_notice_channel(tier) -> str:
    """The channel of an event notice: the first messaging channel of the tier's ``channel_order`` (SMS without a
    tier or without one); an opted-out channel falls back at send time."""
    preferred = [c for c in (tier.channels if tier else []) if c in MESSAGING_CHANNELS]
    return preferred[0] if preferred else Channel.SMS.value


@dataclass
class Notice:
    """One event-driven contact for ``plan_notices`` (a collections ladder message, an auto-debit failure, a promise
    reminder), as plain ids for a batch. ``key_prefix`` names its source (``"case:"``, ``"autodebit:"``...): the
    notices of one source, kind and channel on a customer's local day are one contact (``notice_dedupe_key``)."""

    customer_id: int
    tier_id: int | None
    tz_name: str
    kind: str
    channel: str
    key_prefix: str
    installment_ids: list[int]
    loan_refs: list[str]
    due_date: dt.date | None


def plan_notices(notices: Iterable[Notice], *, now: dt.datetime, actor: str = "system") -> int:
    """Plan event-driven contacts for ``now``, ONE per customer, source, kind and channel of the customer's local
    day listing every loan of those notices, through the planner's own consolidation (``_save_plan_groups``):
    two loans of a customer overdue the same day, or several auto-debits declined the same day, make one message
    naming each loan, so the weekly cap never holds back the second one. A notice whose contact of the day is
    already planned and not yet sent joins it (``notifications.contact.extended``); one already sent or held
    back adds nothing, so planning again is a no-op. Set-based: a fixed number of queries whatever their number.
    The dispatcher sends them through the same gates as any reminder. Writes ``notifications.contact.planned``
    per new row; returns how many were planned. Raises ValueError for a channel that is not a messaging channel.
    """
    notices = list(notices)
    unknown = sorted({n.channel for n in notices if n.channel not in MESSAGING_CHANNELS})
    if unknown:
        raise ValueError(f"Not a messaging channel: {', '.join(unknown)}")
    groups: dict[str, _PlanGroup] = {}
    for n in notices:
        local_day = now.astimezone(zoneinfo.ZoneInfo(n.tz_name)).date()
        key = notice_dedupe_key(n.key_prefix, n.customer_id, local_day, n.kind, n.channel)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _PlanGroup(
                customer_id=n.customer_id,
                tier_id=n.tier_id,
                channel=n.channel,
                kind=n.kind,
                due_date=n.due_date,
                offset_days=None,
                scheduled_for=now,
            )
        elif n.due_date is not None and (group.due_date is None or n.due_date < group.due_date):
            group.due_date = n.due_date
        group.add(n.installment_ids, n.loan_refs)
        if group.due_date is not None:
            group.offset_days = (local_day - group.due_date).days
    if not groups:
        return 0
    totals: Counter = Counter()
    _save_plan_groups(groups, now, totals, set(), actor)
    return totals["planned"]


def plan_notice(
    *,
    customer: Customer,
    kind: str,
    installments: list,
    now: dt.datetime,
    dedupe_key: str,
    channels: list[str] | None = None,
    actor: str = "system",
) -> list[NotificationLog]:
    """Plan one event-driven contact for ``now`` under exactly the caller's key (``plan_notices`` consolidates a
    day's notices; this one is for a contact that stands alone); the dispatcher sends it through the same gates
    as any reminder.

    ``channels`` defaults to the first messaging channel of the customer's tier ``channel_order`` (SMS without
    a tier); an opted-out channel falls back at send time. With one channel the row's ``dedupe_key`` is exactly
    ``dedupe_key``; with several each row gets ``f"{dedupe_key}:{channel}"``. Calling again with the same key
    adds nothing (a row not yet sent takes in instalments it lacks) and returns the existing rows. Writes
    ``notifications.contact.planned`` for new rows.
    """
    tier = customer.tier
    if channels is None:
        channels = [default_notice_channel(tier)]
    unknown = [c for c in channels if c not in MESSAGING_CHANNELS]
    if unknown:
        raise ValueError(f"Not a messaging channel: {', '.join(unknown)}")
    installments = list(installments)
    due_date = min((i.due_date for i in installments), default=None)
    local_day = now.astimezone(customer.zone).date()
    keys = {(dedupe_key if len(channels) == 1 else f"{dedupe_key}:{c}"): c for c in channels}
    groups = {}
    for key, channel in keys.items():
        groups[key] = _PlanGroup(
            customer_id=customer.pk,
            tier_id=customer.tier_id,
            channel=channel,
            kind=kind,
            due_date=due_date,
            offset_days=(local_day - due_date).days if due_date else None,
            scheduled_for=now,
        )
        groups[key].add([i.pk for i in installments], [i.loan.ref for i in installments])
    with transaction.atomic():
        _save_plan_groups(groups, now, Counter(), set(), actor)
        rows = {log.dedupe_key: log for log in NotificationLog.objects.filter(dedupe_key__in=list(keys))}
    return [rows[key] for key in keys if key in rows]


# --- falling back after a failure -------------------------------------------------------------------------
FALLBACK_KEY_MARK = ":fallback:"
FALLBACK_ACTION = "notifications.contact.fell_back"


def plan_fallbacks(logs: Iterable[NotificationLog], *, at: dt.datetime, actor: str) -> list[NotificationLog]:
    """Plan the next channel of the tier for contacts that just failed (a provider refused the message, a
    receipt said failed or undelivered, an email bounced): the same choice as for an opted-out channel at send
    time (``_fallback_channel``: the tier's ``channel_order``, a channel the contact has no row on yet, not
    opted out, with a destination). The new row is scheduled at ``at`` and lists the same instalments; the
    dispatcher sends it through every gate (paid, contact window, weekly cap...) like any contact.

    Set-based (a fixed number of queries for any number of ``logs``); a contact already fallen back from its
    channel adds nothing (the row's ``dedupe_key`` is the failed one's plus ``:fallback:<channel>``). Writes
    ``notifications.contact.planned`` on the new row (with ``fallback_of``) and ``notifications.contact.fell_back``
    on the failed one (with ``fallback_id``), so the timeline shows the chain. Returns the new rows.
    """
    logs = [log for log in logs if log.status == Status.FAILED]
    if not logs:
        return []
    customers = {
        c.pk: c
        for c in Customer.objects.filter(pk__any_of=[log.customer_id for log in logs]).select_related("tier")
    }
    used = _channels_used(logs)
    items: dict[int, list[int]] = defaultdict(list)
    for notification_id, installment_id in (
        NotificationItem.objects.filter(notification_id__any_of=[log.id for log in logs])
        .order_by("id")
        .values_list("notification_id", "installment_id")
    ):
        items[notification_id].append(installment_id)
    groups: dict[str, _PlanGroup] = {}
    for log in logs:
        customer = customers[log.customer_id]
        channels = used.setdefault(_contact_of(log), set())
        channels.add(log.channel)
        channel = _fallback_channel(customer, customer.tier, channels)
        if channel is None:
            continue
        channels.add(channel)
        group = groups[f"{log.dedupe_key}{FALLBACK_KEY_MARK}{channel}"] = _PlanGroup(
            customer_id=log.customer_id,
            tier_id=customer.tier_id if customer.tier_id else log.tier_id,
            channel=channel,
            kind=log.kind,
            due_date=log.due_date,
            offset_days=log.offset_days,
            scheduled_for=at,
            details={"fallback_of": log.id, "failed_channel": log.channel, "error": log.last_error},
        )
        group.add(items.get(log.id, []), [r for r in log.loan_refs.split(",") if r])
    if not groups:
        return []
    with transaction.atomic():
        existing = set(
            NotificationLog.objects.filter(dedupe_key__any_of=list(groups)).values_list(
                "dedupe_key", flat=True
            )
        )
        new = {key: group for key, group in groups.items() if key not in existing}
        if not new:
            return []
        _save_plan_groups(new, at, Counter(), set(), actor)
        planned = list(NotificationLog.objects.filter(dedupe_key__any_of=list(new)).order_by("id"))
        log_events(
            Event(
                action=FALLBACK_ACTION,
                actor=actor,
                object_type=LOG_TYPE,
                object_id=str(new[row.dedupe_key].details["fallback_of"]),
                at=at,
                after={
                    "fallback_id": row.id,
                    "channel": row.channel,
                    "failed_channel": new[row.dedupe_key].details["failed_channel"],
                    "scheduled_for": row.scheduled_for,
                },
            )
            for row in planned
        )
    return planned


# --- cancelling --------------------------------------------------------------------------------------------
_ANY_TIER = object()


def cancel_pending(
    *,
    reason: str,
    actor: str,
    at: dt.datetime,
    installment_ids: Iterable[int] | None = None,
    customer_ids: Iterable[int] | None = None,
    kinds: Iterable[str] | None = None,
    dedupe_prefix: str | None = None,
    except_tier_id: int | None | object = _ANY_TIER,
    details_by_customer: dict[int, dict] | None = None,
) -> int:
    """Cancel contacts still ``planned`` or ``deferred`` with ``reason``; returns how many.

    With ``installment_ids``, a contact listing several instalments is cancelled only when every one of them is
    in ``installment_ids`` or already paid (a consolidated reminder still goes out for the loan left unpaid).
    ``except_tier_id`` (a tier id, or None for "no tier") keeps the contacts planned under that tier: after a
    tier change only what the old tier planned is cancelled, whichever of the two ran first.
    ``details_by_customer`` adds the inputs of the decision (such as the old and new tier) to each event.
    With reason ``tier_changed`` the cancelled rows give up their dedupe key so the new tier can plan the
    same contact again. Writes ``notifications.contact.cancelled`` per contact.
    """
    qs = NotificationLog.objects.pending()
    if customer_ids is not None:
        qs = qs.filter(customer_id__any_of=list(customer_ids))
    if kinds is not None:
        qs = qs.filter(kind__in=list(kinds))
    if dedupe_prefix:
        qs = qs.filter(dedupe_key__startswith=dedupe_prefix)
    if except_tier_id is not _ANY_TIER:
        qs = qs.exclude(tier__isnull=True) if except_tier_id is None else qs.exclude(tier_id=except_tier_id)
    with transaction.atomic():
        if installment_ids is not None:
            paid_now = set(installment_ids)
            # From the instalments' items to their contacts (both by index): a join the database starts from
            # the pending contacts would read every pending contact of the book for each call.
            listed = set(
                NotificationItem.objects.filter(installment_id__any_of=list(paid_now)).values_list(
                    "notification_id", flat=True
                )
            )
            candidates = (
                set(qs.filter(id__any_of=list(listed)).values_list("id", flat=True)) if listed else set()
            )
            still_due = set(
                NotificationItem.objects.filter(
                    notification_id__any_of=list(candidates), installment__paid_at__isnull=True
                )
                .exclude(installment_id__any_of=list(paid_now))
                .values_list("notification_id", flat=True)
            )
            qs = NotificationLog.objects.pending().filter(id__any_of=list(candidates - still_due))
        rows = list(
            qs.order_by().values(
                "id", "status", "customer_id", "channel", "kind", "due_date", "scheduled_for", "tier_id"
            )
        )
        if not rows:
            return 0
        changes: dict[str, Any] = {
            "status": Status.CANCELLED,
            "reason": reason,
            "claimed_until": None,
            "updated_at": timezone.now(),
        }
        if reason == Reason.TIER_CHANGED:
            changes["dedupe_key"] = Concat(
                F("dedupe_key"), Value(":cancelled:"), Cast("id", output_field=CharField())
            )
        ids = [row["id"] for row in rows]
        count = NotificationLog.objects.filter(
            id__in=ids, status__in=NotificationLog.PENDING_STATUSES
        ).update(**changes)
        log_events(
            Event(
                action="notifications.contact.cancelled",
                actor=actor,
                object_type=LOG_TYPE,
                object_id=str(row["id"]),
                at=at,
                before={"status": row["status"]},
                after={
                    "status": Status.CANCELLED,
                    "reason": reason,
                    "customer_id": row["customer_id"],
                    "channel": row["channel"],
                    "kind": row["kind"],
                    "due_date": row["due_date"],
                    "scheduled_for": row["scheduled_for"],
                    "installment_ids": sorted(installment_ids) if installment_ids is not None else None,
                    "tier_id": row["tier_id"],
                    **(details_by_customer or {}).get(row["customer_id"], {}),
                },
            )
            for row in rows
        )
    return count


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


# --- rendering ---------------------------------------------------------------------------------------------
LOAN_LINE = {
    "en": "{loan_ref}: {amount} {currency} due {due_date}",
    "zh-hans": "{loan_ref}：{amount} {currency}，到期日 {due_date}",
}


def template_index() -> dict[tuple[str, str, str], ReminderTemplate]:
    return {(t.kind, t.channel, t.language): t for t in ReminderTemplate.objects.all()}


def pick_template(
    templates: dict[tuple[str, str, str], ReminderTemplate],
    kind: str,
    channel: str,
    language: str,
    default_language: str,
) -> ReminderTemplate | None:
    """The template in the customer's language, else in the policy's default language, else None."""
    return templates.get((kind, channel, language)) or templates.get((kind, channel, default_language))


def build_context(
    customer: Customer, installments: list[Installment], *, tier, now: dt.datetime, language: str
) -> dict:
    """The placeholder values for a message about ``installments`` (with their loans) as of ``now``."""
    local_today = customer.local_now(now).date()
    due_date = min((i.due_date for i in installments), default=None)
    currency = installments[0].loan.currency if installments else settings.DEFAULT_CURRENCY
    amount = sum((i.outstanding for i in installments), Decimal("0.00"))
    loan_refs: list[str] = []
    for inst in installments:
        if inst.loan.ref not in loan_refs:
            loan_refs.append(inst.loan.ref)
    line = LOAN_LINE.get(language, LOAN_LINE["en"])
    loans = "\n".join(
        line.format(
            loan_ref=i.loan.ref,
            amount=i.outstanding,
            currency=i.loan.currency,
            due_date=i.due_date.isoformat(),
        )
        for i in installments
    )
    grace_days = tier.grace_period_days if tier is not None else 0
    return {
        "customer_name": customer.name,
        "amount_due": amount,
        "currency": currency,
        "due_date": due_date.isoformat() if due_date else "",
        "days_until_due": max((due_date - local_today).days, 0) if due_date else "",
        "days_past_due": max((local_today - due_date).days, 0) if due_date else "",
        "grace_end_date": (due_date + dt.timedelta(days=grace_days)).isoformat() if due_date else "",
        "loan_ref": ", ".join(loan_refs),
        "how_to_pay": settings.HOW_TO_PAY,
        "pay_link": pay_links(loan_refs),
        "unsubscribe_link": unsubscribe_url(customer.pk),
        "loans": loans,
    }


def pay_links(loan_refs: list[str]) -> str:
    """The ``{pay_link}`` of a message: each loan's payment page from ``settings.PAY_LINK_URL`` (its ``{loan_ref}``
    URL-quoted); one loan gives its link alone, several one ``ref: link`` line each; no pattern gives nothing."""
    pattern = settings.PAY_LINK_URL
    if not pattern or not loan_refs:
        return ""
    links = [(ref, pattern.format(loan_ref=quote(ref, safe=""))) for ref in loan_refs]
    if len(links) == 1:
        return links[0][1]
    return "".join(f"\n{ref}: {link}" for ref, link in links)


def render_template(template: ReminderTemplate, context: dict) -> tuple[str, str]:
    subject = render(template.subject, context) if template.channel != Channel.SMS else ""
    return subject, render(template.body, context)


def render_message(
    template: ReminderTemplate,
    customer: Customer,
    installments: list[Installment],
    *,
    tier,
    now: dt.datetime,
    policy: ContactPolicy | None = None,
) -> tuple[str, str]:
    """The subject and body of ``template`` for ``customer`` about ``installments`` (with their loans) as of
    ``now``: what the dispatcher sends, and what the admin preview shows (one function for both). An SMS or
    email always carries the contact policy's opt-out line of its language (Regulation F 1006.6(e)): appended on
    a line of its own when the template does not carry it already."""
    context = build_context(customer, installments, tier=tier, now=now, language=template.language)
    subject, body = render_template(template, context)
    policy = policy or ContactPolicy.get()
    line = render(policy.opt_out_line(template.channel, template.language), context)
    if line and line not in body:
        body = f"{body}\n{line}" if body else line
    return subject, body


# Kinds about instalments already past due: with no message of the day to show, they name every one of them.
PAST_DUE_KINDS = (Kind.GRACE, Kind.OVERDUE, Kind.PROMISE_REMINDER)


def message_installments(customer: Customer, kind: str, channel: str, now: dt.datetime) -> tuple[list, Any]:
    """The instalments (with their loans) a ``kind`` message on ``channel`` to ``customer`` names at ``now``, and the
    tier it is rendered under, as the dispatcher takes them: the customer's contact of that kind and channel on
    their local day holding ``now`` (not yet sent, or sent) names its instalments still unpaid and not under legal
    hold, in its order. Without one, what such a message would name now: for a kind about arrears every unpaid
    instalment past due, else the instalments of the next due date (all loans due that day)."""
    zone = customer.zone
    local_day = now.astimezone(zone).date()
    day_start = dt.datetime.combine(local_day, dt.time.min, tzinfo=zone)
    day_end = dt.datetime.combine(local_day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    log = (
        NotificationLog.objects.filter(
            customer=customer,
            kind=kind,
            channel=channel,
            scheduled_for__gte=day_start,
            scheduled_for__lt=day_end,
            status__in=[*NotificationLog.PENDING_STATUSES, *NotificationLog.CONTACTED_STATUSES],
        )
        .order_by("-scheduled_for", "-id")
        .first()
    )
    tier = customer.tier
    if log is not None:
        listed = list(
            Installment.objects.filter(notification_items__notification=log)
            .select_related("loan")
            .order_by("notification_items__id")
        )
        frozen = frozen_loans({i.loan_id for i in listed})
        named = [i for i in listed if i.paid_at is None and i.loan_id not in frozen]
        if named:
            return named, tier or (CreditTier.objects.filter(pk=log.tier_id).first() if log.tier_id else None)
    unpaid = list(
        Installment.objects.unpaid()
        .filter(loan__customer=customer, loan__status=Loan.Status.ACTIVE)
        .select_related("loan")
        .order_by("due_date", "loan__ref", "seq")
    )
    frozen = frozen_loans({i.loan_id for i in unpaid})
    unpaid = [i for i in unpaid if i.loan_id not in frozen]
    past_due = [i for i in unpaid if i.due_date < local_day]
    if kind in PAST_DUE_KINDS and past_due:
        return past_due, tier
    upcoming = [i for i in unpaid if i.due_date >= local_day] or unpaid
    next_due = upcoming[0].due_date if upcoming else None
    return [i for i in upcoming if i.due_date == next_due], tier


def preview_template(template: ReminderTemplate, customer: Customer, now: dt.datetime) -> dict:
    """``template`` rendered for ``customer`` as of ``now`` exactly as the dispatcher renders it, about the
    instalments its message names (``message_installments``), as the admin preview shows it; for SMS also
    characters, segments and encoding."""
    from .templating import sms_segments

    installments, tier = message_installments(customer, template.kind, template.channel, now)
    subject, body = render_message(template, customer, installments, tier=tier, now=now)
    chars, segments, encoding = sms_segments(body)
    return {"subject": subject, "body": body, "chars": chars, "segments": segments, "encoding": encoding}


# --- dispatching -------------------------------------------------------------------------------------------
def claim_due(
    now: dt.datetime, batch_size: int, customer_id_range: tuple[int, int] | None = None
) -> list[int]:
    """Claim up to ``batch_size`` due contacts for this worker (a lease until ``now + claim_lease(n)``).

    On PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` lets concurrent workers take disjoint rows; on SQLite
    the write transaction is exclusive anyway. A row whose lease lapsed (its worker died) is claimable again.
    """
    with transaction.atomic():
        qs = (
            NotificationLog.objects.pending()
            .filter(scheduled_for__lte=now)
            .exclude(claimed_until__gt=now)
            .order_by("scheduled_for", "id")
        )
        if customer_id_range is not None:
            qs = qs.filter(customer_id__gte=customer_id_range[0], customer_id__lt=customer_id_range[1])
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        ids = list(qs.values_list("id", flat=True)[:batch_size])
        if ids:
            NotificationLog.objects.filter(id__any_of=ids).update(claimed_until=now + claim_lease(len(ids)))
    return ids


def claim_lease(batch_size: int) -> dt.timedelta:
    """Long enough for a whole batch to time out at the provider one message after another, so a slow batch
    is never taken over by a second worker while its first is still sending."""
    per_message = float(getattr(settings, "PROVIDER_TIMEOUT_SECONDS", 10)) + 1
    lease = dt.timedelta(seconds=getattr(settings, "DISPATCH_CLAIM_LEASE_SECONDS", 600))
    return max(lease, dt.timedelta(seconds=batch_size * per_message))


def dispatch_due(
    now: dt.datetime, *, batch_size: int | None = None, customer_id_range: tuple[int, int] | None = None
) -> dict:
    """Send the contacts due by ``now`` (pipeline step "dispatch"), in claimed batches.

    Gates, checked at send time in this order (status/reason): every instalment paid -> cancelled/paid (some
    paid: the message covers the unpaid ones); customer do_not_contact -> suppressed/do_not_contact; channel
    opted out -> next channel of the tier's channel_order not yet used for this contact, with a destination,
    else suppressed/opted_out; no destination -> suppressed/no_destination; older than the policy's
    ``expire_after_hours`` -> cancelled/expired (nothing was wrong with the customer: the system was late);
    outside the local contact window or on a public holiday -> deferred/outside_contact_window to the next
    opening; the tier's weekly cap reached -> suppressed/frequency_cap; no template in the customer's or the
    default language -> suppressed/no_template. Then it renders and sends with the row's idempotency key.

    A ``ProviderError`` is retried after ``retry_backoff_seconds * 2**(attempt-1)`` (deferred/provider_error)
    up to ``max_send_attempts``, then failed/provider_error (at once when not retryable). Each claimed batch is
    sent at once (``send_many`` where the backend has it) and all its outcomes are recorded in one transaction
    with one audit write. A worker that dies between sending and recording leaves its rows claimed: when the
    lease lapses they are sent again with the same idempotency keys, and the provider (or the outbox) answers
    with the first message, so nothing reaches a customer twice. Returns counts per status.

    ``customer_id_range`` (low inclusive, high exclusive) limits it to one chunk of the book, so several
    workers can dispatch disjoint chunks; ``batch_size`` defaults to settings.DISPATCH_BATCH_SIZE.
    """
    from .channels import get_backend  # the channel module imports settings-driven backends lazily

    batch_size = batch_size or getattr(settings, "DISPATCH_BATCH_SIZE", 500)

    book = compliance.RulesBook.load()
    templates = template_index()
    totals: Counter = Counter()
    backends: dict[str, Any] = {}
    while True:
        ids = claim_due(now, batch_size, customer_id_range)
        if not ids:
            break
        totals["claimed"] += len(ids)
        _dispatch_batch(ids, now, book, templates, totals, backends, get_backend)
        if len(ids) < batch_size:
            break
    return dict(totals)


def frozen_loans(loan_ids: set[int]) -> set[int]:
    """Of ``loan_ids``, the loans under a legal referral (collections freezes their automatic contact)."""
    if not loan_ids or not apps.is_installed("debt_collection"):
        return set()
    from debt_collection.models import frozen_loan_ids

    return set(frozen_loan_ids().filter(loan_id__any_of=loan_ids).values_list("loan_id", flat=True))


@dataclass
class _Decision:
    log: NotificationLog
    status: str
    reason: str
    inputs: dict


def _dispatch_batch(ids, now, book, templates, totals, backends, get_backend) -> None:
    policy = book.policy
    logs, installments_of = _load_batch(ids)
    sent_counts = Counter(compliance.contacts_in_last_7_days({log.customer_id for log in logs}, now))
    in_flight = compliance.contacts_in_flight({log.customer_id for log in logs}, now, ids)
    frozen = frozen_loans({i.loan_id for installments in installments_of.values() for i in installments})
    # Only a contact whose channel the customer opted out of needs the channels its contact already used.
    used_channels = _channels_used([log for log in logs if log.customer.is_opted_out(log.channel)])
    decisions: list[_Decision] = []
    sends: list[tuple[NotificationLog, dict, list[Installment]]] = []

    for log in logs:
        customer = log.customer
        tier = customer.tier or log.tier
        installments = installments_of.get(log.id, [])
        unpaid = [i for i in installments if i.paid_at is None]
        inputs: dict[str, Any] = {"customer_id": customer.id, "channel": log.channel, "kind": log.kind}
        if installments and not unpaid:
            decisions.append(
                _Decision(
                    log,
                    Status.CANCELLED,
                    Reason.PAID,
                    {**inputs, "installment_ids": [i.id for i in installments]},
                )
            )
            continue
        if len(unpaid) < len(installments):
            inputs["paid_installment_ids"] = [i.id for i in installments if i.paid_at is not None]
        if customer.do_not_contact:
            decisions.append(
                _Decision(
                    log,
                    Status.SUPPRESSED,
                    Reason.DO_NOT_CONTACT,
                    {**inputs, "do_not_contact_reason": customer.do_not_contact_reason},
                )
            )
            continue
        held = [i for i in unpaid if i.loan_id in frozen]
        if held:
            # A legal referral freezes all automatic contact about that loan; other loans may still be reminded.
            inputs["legal_hold_loan_ids"] = sorted({i.loan_id for i in held})
            unpaid = [i for i in unpaid if i.loan_id not in frozen]
            if not unpaid:
                decisions.append(_Decision(log, Status.SUPPRESSED, Reason.DO_NOT_CONTACT, inputs))
                continue
        channel = log.channel
        if customer.is_opted_out(channel):
            fallback = _fallback_channel(customer, tier, used_channels.get(_contact_of(log), {channel}))
            if fallback is None:
                decisions.append(
                    _Decision(
                        log,
                        Status.SUPPRESSED,
                        Reason.OPTED_OUT,
                        {**inputs, "channel_order": tier.channel_order if tier else ""},
                    )
                )
                continue
            inputs["opted_out_of"] = channel
            channel = log.channel = fallback
            used_channels.setdefault(_contact_of(log), set()).add(fallback)
            inputs["channel"] = channel
        destination = customer.destination(channel)
        if not destination:
            decisions.append(_Decision(log, Status.SUPPRESSED, Reason.NO_DESTINATION, inputs))
            continue
        age = now - log.scheduled_for
        if age > dt.timedelta(hours=policy.expire_after_hours):
            decisions.append(
                _Decision(
                    log,
                    Status.CANCELLED,
                    Reason.EXPIRED,
                    {
                        **inputs,
                        "scheduled_for": log.scheduled_for,
                        "expire_after_hours": policy.expire_after_hours,
                    },
                )
            )
            continue
        stale_after = _last_day_for_kind(log, tier)
        if stale_after is not None and customer.local_now(now).date() > stale_after:
            # A "due in 3 days" or "due today" message after the due date, or a grace reminder after the grace
            # period, would say something false (a deferral or a late run carried it past its day).
            decisions.append(
                _Decision(
                    log,
                    Status.CANCELLED,
                    Reason.EXPIRED,
                    {
                        **inputs,
                        "due_date": log.due_date,
                        "local_date": customer.local_now(now).date(),
                        "last_day_for_kind": stale_after,
                    },
                )
            )
            continue
        location = customer.location
        window = compliance.window_gate(now, location, book.for_location(location))
        if not window.allowed:
            if window.not_before is None:
                # The windows of the places the customer may be in never overlap: no time is convenient.
                decisions.append(
                    _Decision(log, Status.SUPPRESSED, window.reason, {**inputs, **window.inputs})
                )
                continue
            decisions.append(_Decision(log, Status.DEFERRED, window.reason, {**inputs, **window.inputs}))
            log.scheduled_for = window.not_before
            continue
        cap = tier.max_contacts_per_week if tier else None
        ahead_elsewhere = sum(
            1 for key in in_flight.get(customer.id, ()) if key < (log.scheduled_for, log.id)
        )
        if compliance.is_over_weekly_cap(sent_counts[customer.id] + ahead_elsewhere, cap):
            decisions.append(
                _Decision(
                    log,
                    Status.SUPPRESSED,
                    Reason.FREQUENCY_CAP,
                    {
                        **inputs,
                        "sent_in_last_7_days": sent_counts[customer.id],
                        "sending_elsewhere": ahead_elsewhere,
                        "max_contacts_per_week": cap,
                    },
                )
            )
            continue
        template = pick_template(templates, log.kind, channel, customer.language, policy.default_language)
        if template is None:
            decisions.append(
                _Decision(
                    log,
                    Status.SUPPRESSED,
                    Reason.NO_TEMPLATE,
                    {**inputs, "language": customer.language, "default_language": policy.default_language},
                )
            )
            continue
        # Counted before sending so a second contact of this customer in the same batch sees the first.
        sent_counts[customer.id] += 1
        inputs.update(
            {
                "language": template.language,
                "template_id": template.id,
                "sent_in_last_7_days": sent_counts[customer.id] - 1,
                "max_contacts_per_week": cap,
            }
        )
        subject, body = render_message(template, customer, unpaid, tier=tier, now=now, policy=policy)
        log.destination, log.language, log.subject, log.body = destination, template.language, subject, body
        sends.append((log, inputs, unpaid))

    _record_decisions(decisions, now, totals)
    _send_batch(sends, now, policy, totals, backends, get_backend)


def _load_batch(ids: list[int]) -> tuple[list[NotificationLog], dict[int, list[Installment]]]:
    """The batch's pending contacts (with their customers; tiers shared, not one copy per row) and the
    instalments of each contact (with their loans), in the order the contacts were planned."""
    tiers = {t.pk: t for t in CreditTier.objects.all()}
    logs = list(
        NotificationLog.objects.filter(id__any_of=ids, status__in=NotificationLog.PENDING_STATUSES)
        .select_related("customer")
        .order_by("scheduled_for", "id")
    )
    for log in logs:
        log.tier = tiers.get(log.tier_id)
        log.customer.tier = tiers.get(log.customer.tier_id)
    installments_of: dict[int, list[Installment]] = defaultdict(list)
    for inst in (
        Installment.objects.filter(notification_items__notification_id__any_of=[log.id for log in logs])
        .annotate(contact_id=F("notification_items__notification_id"))
        .select_related("loan")
        .order_by("notification_items__id")
    ):
        installments_of[inst.contact_id].append(inst)
    return logs, installments_of


def _last_day_for_kind(log: NotificationLog, tier) -> dt.date | None:
    """The customer's last local day on which a reminder of this kind still tells the truth (None: any day)."""
    if log.due_date is None:
        return None
    if log.kind in (Kind.PRE_DUE, Kind.DUE_TODAY):
        return log.due_date
    if log.kind == Kind.GRACE:
        return log.due_date + dt.timedelta(days=tier.grace_period_days if tier is not None else 0)
    return None


def _contact_of(log: NotificationLog) -> tuple:
    return (log.customer_id, log.due_date, log.kind, log.offset_days)


def _channels_used(logs: list[NotificationLog]) -> dict[tuple, set[str]]:
    """For each contact (customer, due date, kind, offset) of the batch, the channels it already has a row on."""
    if not logs:
        return {}
    used: dict[tuple, set[str]] = defaultdict(set)
    rows = NotificationLog.objects.filter(
        customer_id__in={log.customer_id for log in logs}, kind__in={log.kind for log in logs}
    ).values_list("customer_id", "due_date", "kind", "offset_days", "channel")
    wanted = {_contact_of(log) for log in logs}
    for customer_id, due_date, kind, offset, channel in rows.order_by():
        if (customer_id, due_date, kind, offset) in wanted:
            used[(customer_id, due_date, kind, offset)].add(channel)
    return used


def _fallback_channel(customer: Customer, tier, used: set[str]) -> str | None:
    for channel in tier.channels if tier else []:
        if (
            channel in MESSAGING_CHANNELS
            and channel not in used
            and not customer.is_opted_out(channel)
            and customer.destination(channel)
        ):
            return channel
    return None


def _decision_event(log: NotificationLog, status: str, reason: str, before: str, inputs: dict, now) -> Event:
    return Event(
        action=f"notifications.contact.{status}",
        actor=DISPATCHER_ACTOR,
        object_type=LOG_TYPE,
        object_id=str(log.id),
        at=now,
        before={"status": before},
        after={"status": status, "reason": reason, **inputs},
    )


def _record_decisions(decisions: list[_Decision], now: dt.datetime, totals: Counter) -> None:
    if not decisions:
        return
    stamp = timezone.now()
    events = []
    for d in decisions:
        before = d.log.status
        d.log.status, d.log.reason, d.log.claimed_until, d.log.updated_at = d.status, d.reason, None, stamp
        events.append(_decision_event(d.log, d.status, d.reason, before, d.inputs, now))
        totals[d.status] += 1
        totals[f"{d.status}:{d.reason}"] += 1
    with transaction.atomic():
        bulk_update_rows(
            [d.log for d in decisions],
            ["status", "reason", "scheduled_for", "channel", "claimed_until", "updated_at"],
            batch_size=500,
        )
        log_events(events)


def _send_batch(sends, now, policy, totals, backends, get_backend) -> None:
    """Send the batch's messages (per channel, through ``send_all``: one call for a backend with ``send_many``),
    then record every outcome in ONE transaction: the sent rows with one update of their common fields and a
    bulk update of their own, the provider errors (retry with backoff, or failed) with a bulk update, and one
    audit write for all of them.

    Crash safety: a worker that dies after sending and before this record leaves its rows claimed; when the
    lease lapses another run re-sends them with the same idempotency keys, and the provider (or the outbox)
    answers with the first message: nothing reaches a customer twice."""
    from .channels import OutgoingMessage, ProviderError, send_all

    if not sends:
        return
    by_channel: dict[str, list[int]] = defaultdict(list)
    for index, (log, _inputs, _unpaid) in enumerate(sends):
        by_channel[log.channel].append(index)
    outcomes: list[Any] = [None] * len(sends)
    for channel, indexes in by_channel.items():
        messages = [
            OutgoingMessage(
                channel=sends[i][0].channel,
                destination=sends[i][0].destination,
                subject=sends[i][0].subject,
                body=sends[i][0].body,
                idempotency_key=str(sends[i][0].idempotency_key),
                language=sends[i][0].language,
                unsubscribe_url=unsubscribe_url(sends[i][0].customer_id) if channel == Channel.EMAIL else "",
            )
            for i in indexes
        ]
        try:
            backend = backends.get(channel) or backends.setdefault(channel, get_backend(channel))
        except Exception as exc:  # noqa: BLE001 - a channel without a working backend fails its messages only
            results = [ProviderError(f"{type(exc).__name__}: {exc}", retryable=True)] * len(messages)
        else:
            results = send_all(backend, messages)
        for i, result in zip(indexes, results):
            outcomes[i] = result

    stamp = timezone.now()
    sent_logs, failed_logs, events, dead = [], [], [], []
    for (log, inputs, unpaid), outcome in zip(sends, outcomes):
        before = log.status
        attempts = log.attempts + 1
        log.attempts, log.claimed_until, log.updated_at = attempts, None, stamp
        if isinstance(outcome, ProviderError):
            error = (str(outcome) or type(outcome).__name__)[:500]
            status = _apply_failure(log, now, policy, attempts, error, outcome.retryable)
            details = {**inputs, "attempt": attempts, "error": error, "retryable": outcome.retryable}
            if status == Status.DEFERRED:
                details["retry_at"] = log.scheduled_for
            events.append(_decision_event(log, status, Reason.PROVIDER_ERROR, before, details, now))
            failed_logs.append(log)
            if outcome.dead_destination:
                dead.append(DeadDestination(log.channel, log.destination, error))
            totals[status] += 1
            totals[f"{status}:{Reason.PROVIDER_ERROR}"] += 1
            continue
        loan_refs: list[str] = []
        for inst in unpaid:
            if inst.loan.ref not in loan_refs:
                loan_refs.append(inst.loan.ref)
        log.status, log.reason, log.sent_at, log.last_error = Status.SENT, "", now, ""
        log.subject = log.subject[:255]
        log.loan_refs = ",".join(loan_refs)[:500] or log.loan_refs
        log.provider_message_id = outcome.provider_message_id[:128]
        sent_logs.append(log)
        events.append(
            _decision_event(
                log,
                Status.SENT,
                "",
                before,
                {
                    **inputs,
                    "attempt": attempts,
                    "provider_message_id": outcome.provider_message_id,
                    "loan_refs": loan_refs,
                },
                now,
            )
        )
        totals[Status.SENT] += 1
    with transaction.atomic():
        if sent_logs:
            # One statement per batch writes every field of a sent row: a second UPDATE of the same rows would
            # write each row (and every index of the log) twice.
            bulk_update_rows(
                sent_logs,
                [
                    "status",
                    "reason",
                    "sent_at",
                    "last_error",
                    "claimed_until",
                    "updated_at",
                    "channel",
                    "destination",
                    "language",
                    "subject",
                    "body",
                    "loan_refs",
                    "attempts",
                    "provider_message_id",
                ],
                batch_size=500,
            )
        if failed_logs:
            bulk_update_rows(
                failed_logs,
                [
                    "status",
                    "reason",
                    "attempts",
                    "last_error",
                    "channel",
                    "scheduled_for",
                    "claimed_until",
                    "updated_at",
                ],
                batch_size=500,
            )
        log_events(events)
        # A dead address is forgotten before falling back, and the contacts that failed for good go on to the
        # next channel of the tier, in the same transaction as their failure.
        if dead:
            forget_destinations(dead, at=now, actor=DISPATCHER_ACTOR)
        failed_for_good = [log for log in failed_logs if log.status == Status.FAILED]
        if failed_for_good:
            plan_fallbacks(failed_for_good, at=now, actor=DISPATCHER_ACTOR)


def _apply_failure(log, now, policy, attempts, error, retryable) -> str:
    """Set the fields of a provider error on ``log``: retried after ``retry_backoff_seconds * 2**(attempt-1)``
    (deferred) until ``max_send_attempts``, failed at once when retrying cannot help. Returns the status."""
    log.last_error, log.reason = error, Reason.PROVIDER_ERROR
    if not retryable or attempts >= policy.max_send_attempts:
        log.status = Status.FAILED
    else:
        log.status = Status.DEFERRED
        log.scheduled_for = now + dt.timedelta(seconds=policy.retry_backoff_seconds * 2 ** (attempts - 1))
    return log.status
