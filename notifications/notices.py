"""Notices: event-driven contacts (a collections ladder message, an auto-debit failure, a promise reminder) and
the fallback to the next channel after a failure.

- ``plan_notices(notices, now=...)`` plans a batch of ``Notice`` values, one contact per customer, source, kind
  and channel of the customer's local day; ``plan_notice(...)`` one contact under exactly the caller's key.
- ``plan_fallbacks(logs, at=..., actor=...)`` plans the next channel of the tier for contacts that failed.

All of them are planned through ``planning.save_plan_groups`` and sent through the same gates as any reminder.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from core.audit import Event, log_events
from loans.models import Customer

from .choices import MESSAGING_CHANNELS, Channel
from .gates import next_channel
from .models import NotificationItem, NotificationLog
from .planning import PlanGroup, notice_dedupe_key, save_plan_groups

Status = NotificationLog.Status
LOG_TYPE = NotificationLog._meta.label


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
    # The policy version the notice was decided under (a case's); None: the tier's current version.
    policy_version_id: int | None = None


def plan_notices(notices: Iterable[Notice], *, now: dt.datetime, actor: str = "system") -> int:
    """Plan event-driven contacts for ``now``, ONE per customer, source, kind and channel of the customer's local
    day listing every loan of those notices, through the planner's own consolidation (``save_plan_groups``):
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
    groups: dict[str, PlanGroup] = {}
    for n in notices:
        local_day = now.astimezone(zoneinfo.ZoneInfo(n.tz_name)).date()
        key = notice_dedupe_key(n.key_prefix, n.customer_id, local_day, n.kind, n.channel)
        group = groups.get(key)
        if group is None:
            group = groups[key] = PlanGroup(
                customer_id=n.customer_id,
                tier_id=n.tier_id,
                channel=n.channel,
                kind=n.kind,
                due_date=n.due_date,
                offset_days=None,
                scheduled_for=now,
                policy_version_id=n.policy_version_id,
            )
        elif n.due_date is not None and (group.due_date is None or n.due_date < group.due_date):
            group.due_date = n.due_date
        group.add(n.installment_ids, n.loan_refs)
        if group.due_date is not None:
            group.offset_days = (local_day - group.due_date).days
    if not groups:
        return 0
    totals: Counter = Counter()
    save_plan_groups(groups, now, totals, set(), actor)
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
        groups[key] = PlanGroup(
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
        save_plan_groups(groups, now, Counter(), set(), actor)
        rows = {log.dedupe_key: log for log in NotificationLog.objects.filter(dedupe_key__in=list(keys))}
    return [rows[key] for key in keys if key in rows]


FALLBACK_KEY_MARK = ":fallback:"
FALLBACK_ACTION = "notifications.contact.fell_back"


def plan_fallbacks(logs: Iterable[NotificationLog], *, at: dt.datetime, actor: str) -> list[NotificationLog]:
    """Plan the next channel of the tier for contacts that just failed (a provider refused the message, a
    receipt said failed or undelivered, an email bounced): the same choice as for an opted-out channel at send
    time (``gates.next_channel``: the tier's ``channel_order``, a channel the contact has no row on yet, not
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
    used = channels_used(logs)
    items: dict[int, list[int]] = defaultdict(list)
    for notification_id, installment_id in (
        NotificationItem.objects.filter(notification_id__any_of=[log.id for log in logs])
        .order_by("id")
        .values_list("notification_id", "installment_id")
    ):
        items[notification_id].append(installment_id)
    groups: dict[str, PlanGroup] = {}
    for log in logs:
        customer = customers[log.customer_id]
        channels = used.setdefault(contact_key(log), set())
        channels.add(log.channel)
        opted_out_of, destinations = channel_facts(customer)
        tier = customer.tier
        channel = next_channel(tier.channels if tier else [], channels, opted_out_of, destinations)
        if channel is None:
            continue
        channels.add(channel)
        group = groups[f"{log.dedupe_key}{FALLBACK_KEY_MARK}{channel}"] = PlanGroup(
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
        save_plan_groups(new, at, Counter(), set(), actor)
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


def contact_key(log: NotificationLog) -> tuple:
    """The contact a row is one channel of: its customer, due date, kind and offset."""
    return (log.customer_id, log.due_date, log.kind, log.offset_days)


def channels_used(logs: list[NotificationLog]) -> dict[tuple, set[str]]:
    """For each contact (customer, due date, kind, offset) of the batch, the channels it already has a row on."""
    if not logs:
        return {}
    used: dict[tuple, set[str]] = defaultdict(set)
    rows = NotificationLog.objects.filter(
        customer_id__in={log.customer_id for log in logs}, kind__in={log.kind for log in logs}
    ).values_list("customer_id", "due_date", "kind", "offset_days", "channel")
    wanted = {contact_key(log) for log in logs}
    for customer_id, due_date, kind, offset, channel in rows.order_by():
        if (customer_id, due_date, kind, offset) in wanted:
            used[(customer_id, due_date, kind, offset)].add(channel)
    return used


def channel_facts(customer: Customer) -> tuple[frozenset[str], dict[str, str]]:
    """The channels ``customer`` opted out of, and their address on each channel ("" for none)."""
    return (
        frozenset(c for c in _CHANNELS if customer.is_opted_out(c)),
        {c: customer.destination(c) for c in _CHANNELS},
    )


# ``Channel.values`` builds its list again on every read; the dispatcher asks for every contact.
_CHANNELS = tuple(Channel.values)
