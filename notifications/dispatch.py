"""Dispatch: claim the contacts due, decide each through the send-time gates, send, record the outcome.

- ``dispatch_due(now)`` (pipeline step "dispatch") claims the contacts due by ``now`` in batches
  (``claim_due``, a lease of ``claim_lease``), gathers each batch's facts in bulk (``_load_batch``, the weekly
  counts, legal holds, channels used), asks ``gates.decide`` for each contact and applies the decisions in bulk;
  what passes is rendered (``rendering.render_message``) and sent through the channel's backend.
- A provider error is retried with backoff or failed (``_apply_failure``); a contact failed for good falls back
  to the next channel of the tier (``notices.plan_fallbacks``).

Every decision is written to the audit trail as ``notifications.contact.<status>`` with its reason and inputs.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core.audit import Event, append_events
from core.bulk import bulk_update_rows
from core.lookups import within_bounds
from loans.models import CreditTier, Installment
from loans.schedule import grace_days_of, grace_end_date

from . import compliance, gates
from .channels import get_backend
from .choices import Channel
from .destinations import DeadDestination, forget_destinations
from .gates import Decision
from .inbound import unsubscribe_url
from .models import NotificationLog
from .notices import channel_facts, channels_used, contact_key, plan_fallbacks
from .receipts import apply_parked_receipts
from .rendering import render_message, template_index
from .sending import OutgoingMessage, ProviderError, batch_send_seconds, start_send_all

Status = NotificationLog.Status
Reason = NotificationLog.Reason
DISPATCHER_ACTOR = "job:dispatch_due"
LOG_TYPE = NotificationLog._meta.label


def claim_due(
    now: dt.datetime,
    batch_size: int,
    customer_id_range: tuple[int, int] | None = None,
    customer_ids: Iterable[int] | None = None,
) -> list[int]:
    """Claim up to ``batch_size`` due contacts for this worker (a lease until ``now + claim_lease(n)``), of the
    customers of ``customer_id_range`` or ``customer_ids`` when given.

    On PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` lets concurrent workers take disjoint rows; on SQLite
    the write transaction is exclusive anyway. A row whose lease lapsed (its worker died) is claimable again.
    """
    # Not within another transaction: a planner setting of the claim's own transaction ends with it.
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        qs = (
            NotificationLog.objects.pending()
            .filter(scheduled_for__lte=now)
            .exclude(claimed_until__gt=now)
            .order_by("scheduled_for", "id")
        )
        if customer_id_range is not None:
            qs = qs.filter(customer_id__gte=customer_id_range[0], customer_id__lt=customer_id_range[1])
        if customer_ids is not None:
            qs = qs.filter(customer_id__any_of=list(customer_ids))
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        with _merged_in_index_order(restore=not outermost):
            ids = list(qs.values_list("id", flat=True)[:batch_size])
        if ids:
            NotificationLog.objects.filter(id__any_of=ids).update(claimed_until=now + claim_lease(len(ids)))
    return ids


@contextmanager
def _merged_in_index_order(restore: bool):
    """On PostgreSQL, the claim's partitions read in the order of their pending index and merged, never sorted.

    The log is partitioned by month, so the claim's ``ORDER BY ... LIMIT`` is either a merge of each partition's
    index in order, stopping at the batch, or every pending contact due read and sorted. The planner weighs them
    on its statistics, and they count the pending contacts of before the day's planning (a day plans 100,000
    contacts minutes before it dispatches them, too soon for autovacuum's analyse): it took the sort, and read
    and sorted every contact still due for each batch of 500, 29 ms a batch at 1,000,000 loans. Sorting is
    turned off for the claim's transaction (``set_config(..., true)``); with ``restore``, for a claim within a
    longer transaction, the setting of before is put back after the statement."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)")
        [(before, _off)] = cursor.fetchall()
    yield
    # Not on an error: the transaction is rolled back then (to its savepoint), and the setting with it.
    if restore:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('enable_sort', %s, true)", [before])


def claim_lease(batch_size: int) -> dt.timedelta:
    """Long enough for a whole batch to time out at the slowest provider (``batch_send_seconds``: concurrently
    where the backend sends concurrently, within its rate), so a slow batch is never taken over by a second
    worker while its first is still sending."""
    lease = dt.timedelta(seconds=getattr(settings, "DISPATCH_CLAIM_LEASE_SECONDS", 600))
    return max(lease, dt.timedelta(seconds=batch_send_seconds(batch_size)))


def dispatch_due(
    now: dt.datetime,
    *,
    batch_size: int | None = None,
    customer_id_range: tuple[int, int] | None = None,
    customer_ids: Iterable[int] | None = None,
    backend_for: Callable[[str], Any] | None = None,
) -> dict:
    """Send the contacts due by ``now`` (pipeline step "dispatch"), in claimed batches.

    Each claimed batch: the facts of its contacts are gathered in bulk, the gate chain (``gates.decide``: paid,
    do not contact, legal hold, opted out -> next channel, no destination, expired, contact window -> deferred
    to the next opening, weekly cap, no template) decides each contact, and the decisions are applied in bulk.
    What passes is rendered and sent with the row's idempotency key.

    A ``ProviderError`` is retried after ``retry_backoff_seconds * 2**(attempt-1)`` (deferred/provider_error)
    up to ``max_send_attempts``, then failed/provider_error (at once when not retryable). Each claimed batch is
    sent at once (``send_many`` where the backend has it) and all its outcomes are recorded in one transaction
    with one audit write. A worker that dies between sending and recording leaves its rows claimed: when the
    lease lapses they are sent again with the same idempotency keys, and the provider (or the outbox) answers
    with the first message, so nothing reaches a customer twice. Returns counts per status.

    ``customer_id_range`` (low inclusive, high exclusive) limits it to one chunk of the book, so several
    workers can dispatch disjoint chunks; ``customer_ids`` to those customers; ``batch_size`` defaults to
    settings.DISPATCH_BATCH_SIZE. ``backend_for(channel)`` gives the delivery backend of a channel (default the
    configured one, ``notifications.channels.get_backend``).
    """
    if customer_ids is not None:
        customer_ids = list(customer_ids)
    batch_size = batch_size or getattr(settings, "DISPATCH_BATCH_SIZE", 500)

    book = compliance.RulesBook.load()
    templates = template_index()
    totals: Counter = Counter()
    backends: dict[str, Any] = {}
    # A batch is at its providers (an HTTP backend sends on its own threads, within its concurrency) while the
    # next is claimed, prepared and handed over; then it is recorded. Its rows stay claimed until then, so the
    # next batch's weekly cap counts them in flight.
    at_providers = None
    try:
        while True:
            ids = claim_due(now, batch_size, customer_id_range, customer_ids)
            started = None
            if ids:
                totals["claimed"] += len(ids)
                started = _dispatch_batch(
                    ids, now, book, templates, totals, backends, backend_for or get_backend
                )
            previous, at_providers = at_providers, started
            if previous:
                _record_sends(*previous)
            if len(ids) < batch_size:
                break
    finally:
        if at_providers:
            _record_sends(*at_providers)
    return dict(totals)


def _dispatch_batch(ids, now, book, templates, totals, backends, get_backend) -> None:
    """Gather the facts of the batch in bulk, decide each contact through the gate chain, apply in bulk."""
    policy = book.policy
    logs, installments_of = _load_batch(ids)
    sent_counts = Counter(compliance.contacts_in_last_7_days({log.customer_id for log in logs}, now))
    in_flight = compliance.contacts_in_flight({log.customer_id for log in logs}, now, ids)
    held = frozenset(i.loan_id for items in installments_of.values() for i in items if i.loan.legal_hold)
    # Only a contact whose channel the customer opted out of needs the channels its contact already used.
    used_channels = channels_used([log for log in logs if log.customer.is_opted_out(log.channel)])
    decisions: list[tuple[NotificationLog, Decision, dict]] = []
    sends: list[tuple[NotificationLog, dict, list[Installment]]] = []
    tier_facts: dict = {}

    for log in logs:
        customer = log.customer
        installments = {i.id: i for i in installments_of.get(log.id, [])}
        decision = gates.decide(
            _contact(log, installments.values()),
            _facts(log, now, book, templates, held, used_channels, sent_counts, in_flight, tier_facts),
        )
        inputs: dict[str, Any] = {"customer_id": customer.id, "channel": log.channel, "kind": log.kind}
        if decision.channel != log.channel:
            # The next channel of the tier replaces an opted-out one; a second row of the contact sees it used.
            used_channels.setdefault(contact_key(log), set()).add(decision.channel)
            log.channel = decision.channel
        inputs.update(decision.inputs)
        if not decision.allowed:
            if decision.status == Status.DEFERRED and decision.not_before is not None:
                log.scheduled_for = decision.not_before
            decisions.append((log, decision, inputs))
            continue
        # Counted before sending so a second contact of this customer in the same batch sees the first.
        sent_counts[customer.id] += 1
        tier = customer.tier or log.tier
        template = decision.template
        inputs.update(
            {
                "language": template.language,
                "template_id": template.id,
                "sent_in_last_7_days": sent_counts[customer.id] - 1,
                "max_contacts_per_week": tier.max_contacts_per_week if tier else None,
            }
        )
        unpaid = [installments[item.installment_id] for item in decision.items]
        subject, body = render_message(template, customer, unpaid, tier=tier, now=now, policy=policy)
        log.destination, log.language, log.subject, log.body = (
            decision.destination,
            template.language,
            subject,
            body,
        )
        sends.append((log, inputs, unpaid))

    _record_decisions(decisions, now, totals)
    return _start_sends(sends, now, policy, totals, backends, get_backend)


def _contact(log: NotificationLog, installments: Iterable[Installment]) -> gates.Contact:
    return gates.Contact(
        customer_id=log.customer_id,
        channel=log.channel,
        kind=log.kind,
        scheduled_for=log.scheduled_for,
        due_date=log.due_date,
        items=tuple(gates.Item(i.id, i.loan_id, i.paid_at is not None) for i in installments),
    )


def _tier_facts(tier) -> tuple[tuple[str, ...], str, int | None, int]:
    """What the gates read of a tier: its channel order (and as stored), weekly cap and grace days."""
    if tier is None:
        return (), "", None, grace_days_of(None)
    return tuple(tier.channels), tier.channel_order, tier.max_contacts_per_week, grace_days_of(tier)


def _facts(log, now, book, templates, held, used_channels, sent_counts, in_flight, tiers) -> gates.Facts:
    """The gates' facts of one contact of the batch, from what the batch gathered (``tiers``: each tier's facts,
    worked out once per batch)."""
    customer = log.customer
    tier = customer.tier or log.tier
    key = tier.pk if tier else None
    if key not in tiers:
        tiers[key] = _tier_facts(tier)
    channel_order, channel_order_label, cap, grace_days = tiers[key]
    location = customer.location
    opted_out_of, destinations = channel_facts(customer)
    flight = in_flight.get(customer.id)
    return gates.Facts(
        now=now,
        location=location,
        rules=book.for_location(location),
        local_date=customer.local_now(now).date(),
        calendar_zone=customer.timezone,
        do_not_contact=customer.do_not_contact,
        do_not_contact_reason=customer.do_not_contact_reason,
        legal_hold_loan_ids=held,
        opted_out_of=opted_out_of,
        destinations=destinations,
        channel_order=channel_order,
        channel_order_label=channel_order_label,
        channels_used=frozenset(used_channels.get(contact_key(log), (log.channel,))),
        expire_after_hours=book.policy.expire_after_hours,
        grace_end=grace_end_date(log.due_date, grace_days) if log.due_date else None,
        contacts_in_7_days=sent_counts[customer.id],
        contacts_in_flight=sum(1 for key in flight if key < (log.scheduled_for, log.id)) if flight else 0,
        max_contacts_per_week=cap,
        templates=templates,
        language=customer.language,
        default_language=book.policy.default_language,
    )


def _load_batch(ids: list[int]) -> tuple[list[NotificationLog], dict[int, list[Installment]]]:
    """The batch's pending contacts (with their customers; tiers shared, not one copy per row) and the
    instalments of each contact (with their loans), in the order the contacts were planned."""
    tiers = {t.pk: t for t in CreditTier.objects.all()}
    # By primary key alone, the status kept here (see ``NotificationLogQuerySet.pending``); within the batch's
    # bounds: given the list alone, PostgreSQL read the whole month's partition of the log for each batch.
    logs = sorted(
        (
            log
            for log in NotificationLog.objects.filter(within_bounds("id", ids), id__any_of=ids)
            .select_related("customer")
            .order_by()
            if NotificationLog.is_pending_status(log.status)
        ),
        key=lambda log: (log.scheduled_for, log.id),
    )
    for log in logs:
        log.tier = tiers.get(log.tier_id)
        log.customer.tier = tiers.get(log.customer.tier_id)
    installments_of: dict[int, list[Installment]] = defaultdict(list)
    contact_ids = [log.id for log in logs]
    for inst in (
        Installment.objects.filter(
            within_bounds("notification_items__notification_id", contact_ids),
            notification_items__notification_id__any_of=contact_ids,
        )
        .annotate(contact_id=F("notification_items__notification_id"))
        .select_related("loan")
        .order_by("notification_items__id")
    ):
        installments_of[inst.contact_id].append(inst)
    return logs, installments_of


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


def _record_decisions(
    decisions: list[tuple[NotificationLog, Decision, dict]], now: dt.datetime, totals: Counter
) -> None:
    if not decisions:
        return
    stamp = timezone.now()
    events = []
    for log, d, inputs in decisions:
        before = log.status
        log.status, log.reason, log.claimed_until, log.updated_at = d.status, d.reason, None, stamp
        events.append(_decision_event(log, d.status, d.reason, before, inputs, now))
        totals[d.status] += 1
        totals[f"{d.status}:{d.reason}"] += 1
    with transaction.atomic():
        bulk_update_rows(
            [log for log, _d, _inputs in decisions],
            ["status", "reason", "scheduled_for", "channel", "claimed_until", "updated_at"],
            batch_size=500,
        )
        append_events(events)


def _start_sends(sends, now, policy, totals, backends, get_backend) -> tuple | None:
    """Start sending the batch's messages (per channel, through ``start_send_all``: one call for a backend with
    ``send_many``, on its own thread for an HTTP provider). Returns what ``_record_sends`` takes, None when
    there is nothing to send."""
    if not sends:
        return None
    by_channel: dict[str, list[int]] = defaultdict(list)
    for index, (log, _inputs, _unpaid) in enumerate(sends):
        by_channel[log.channel].append(index)
    started = []
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
            failed: Future = Future()
            failed.set_result([ProviderError(f"{type(exc).__name__}: {exc}", retryable=True)] * len(messages))
            started.append((indexes, failed))
        else:
            started.append((indexes, start_send_all(backend, messages)))
    return sends, started, now, policy, totals


def _record_sends(sends, started, now, policy, totals) -> None:
    """Wait for the batch's outcomes, then record every one in ONE transaction: the sent rows with one update
    of their common fields and a bulk update of their own, the provider errors (retry with backoff, or failed)
    with a bulk update, and one audit write for all of them, in the batch's order.

    Crash safety: a worker that dies after sending and before this record leaves its rows claimed; when the
    lease lapses another run re-sends them with the same idempotency keys, and the provider (or the outbox)
    answers with the first message: nothing reaches a customer twice."""
    outcomes: list[Any] = [None] * len(sends)
    for indexes, sending in started:
        for i, result in zip(indexes, sending.result()):
            outcomes[i] = result

    stamp = timezone.now()
    sent_logs, failed_logs, events, dead = [], [], [], []
    for (log, inputs, unpaid), outcome in zip(sends, outcomes):
        before = log.status
        # A provider that throttled us (429) did not refuse the message: that try spends no attempt.
        throttled = isinstance(outcome, ProviderError) and outcome.retry_after is not None
        attempts = log.attempts + (0 if throttled else 1)
        log.attempts, log.claimed_until, log.updated_at = attempts, None, stamp
        if isinstance(outcome, ProviderError):
            error = (str(outcome) or type(outcome).__name__)[:500]
            status = _apply_failure(log, now, policy, attempts, error, outcome.retryable, outcome.retry_after)
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
            # What every sent row gets alike goes once, not once per row.
            bulk_update_rows(
                sent_logs,
                [
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
                same={
                    "status": Status.SENT,
                    "reason": "",
                    "sent_at": now,
                    "last_error": "",
                    "claimed_until": None,
                    "updated_at": stamp,
                },
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
        append_events(events)
        # A fast provider's receipt can come before this record: it was parked, and applies now.
        if sent_logs:
            apply_parked_receipts([log.provider_message_id for log in sent_logs], now=now)
        # A dead address is forgotten before falling back, and the contacts that failed for good go on to the
        # next channel of the tier, in the same transaction as their failure.
        if dead:
            forget_destinations(dead, at=now, actor=DISPATCHER_ACTOR)
        failed_for_good = [log for log in failed_logs if log.status == Status.FAILED]
        if failed_for_good:
            plan_fallbacks(failed_for_good, at=now, actor=DISPATCHER_ACTOR)


def _apply_failure(log, now, policy, attempts, error, retryable, retry_after=None) -> str:
    """Set the fields of a provider error on ``log``: retried after ``retry_backoff_seconds * 2**(attempt-1)``
    (deferred) until ``max_send_attempts``, failed at once when retrying cannot help. A throttled message
    (``retry_after`` seconds, the provider's 429) is deferred that long and never fails for it (the contact
    expires instead if the provider never takes it). Returns the status."""
    log.last_error, log.reason = error, Reason.PROVIDER_ERROR
    if retry_after is not None:
        log.status = Status.DEFERRED
        log.scheduled_for = now + dt.timedelta(seconds=max(1.0, retry_after))
    elif not retryable or attempts >= policy.max_send_attempts:
        log.status = Status.FAILED
    else:
        log.status = Status.DEFERRED
        log.scheduled_for = now + dt.timedelta(seconds=policy.retry_backoff_seconds * 2 ** (attempts - 1))
    return log.status
