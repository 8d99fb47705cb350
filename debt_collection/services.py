"""Collections workflows: the daily ladder, call outcomes, promises, agency placements, legal referrals.

Everything here writes its decisions to the audit trail (``collections.*``) in the same transaction as the
change. The daily job (``advance_collections``) is set-based and chunked and safe to run twice for the same
moment: a case is unique per open loan, a step runs once per case (``CaseStepRun``), a contact once per
``dedupe_key`` in the reminder engine's log.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum

from backoffice.audit import Event, actor_name, log_event, log_events
from backoffice.bulk import bulk_update_rows
from loans.models import CreditTier, Customer, Installment, Loan, Payment
from loans.schedule import days_past_due, grace_days_of, local_date
from notifications.compliance import CallMade, RulesBook, contacts_in_last_7_days
from notifications.gates import Callee, earliest_call

from .calls import callee_of, calls_made, decide_call, voicemail_for
from .models import (
    MESSAGING_ACTIONS,
    Agency,
    AgencyPlacement,
    CallAttempt,
    CallAttemptLoan,
    CallTask,
    CaseStepRun,
    CollectionCase,
    EscalationStep,
    LegalReferral,
    PromiseToPay,
)

JOB_ACTOR = "job:advance_collections"
CHUNK = 2000
ZERO = Decimal("0")
# After "no answer" the next attempt is a few hours later (the contact window and the weekly cap still apply).
NO_ANSWER_RETRY_AFTER = dt.timedelta(hours=4)
PROMISE_MAX_DAYS_AHEAD = 31

# Reason codes of the reminder engine (SPEC.md) used when collections cancel what is pending.
REASON_PAID = "paid"
REASON_DO_NOT_CONTACT = "do_not_contact"
REASON_OPTED_OUT = "opted_out"
# Dedupe keys of the ladder's messages in the reminder engine's log start with this and the tier: the messages of
# one customer, kind and channel on their local day are one contact naming every case's loan (notice_dedupe_key).
LADDER_KEY_PREFIX = "case:"
PROMISE_KEY_PREFIX = "promise:"


# --- where a loan stands ---------------------------------------------------------------------------------
@dataclass
class LoanPosition:
    """An active loan's past-due picture at one moment, in its customer's local calendar."""

    loan_id: int
    customer_id: int
    tz_name: str
    tier_id: int | None
    grace_days: int
    is_do_not_contact: bool
    is_opted_out_of_calls: bool
    today: dt.date
    loan_ref: str = ""
    phone: str = ""
    is_timezone_given: bool = True
    past_due_ids: list[int] = field(default_factory=list)
    first_due_date: dt.date | None = None
    dpd: int = 0
    amount_overdue: Decimal = ZERO

    @property
    def is_overdue(self) -> bool:
        """Past the tier's grace period: a case is open while this holds."""
        return self.dpd > self.grace_days

    def callee(self) -> Callee:
        """The person called, as the call gates see them (the weekly cap is checked when the call is made)."""
        from django.conf import settings

        from loans.locations import locate

        return Callee(
            location=locate(
                stored_zone=self.tz_name if self.is_timezone_given else "",
                phone=self.phone,
                default_zone=settings.TIME_ZONE,
            ),
            calendar_zone=self.tz_name,
            do_not_contact=self.is_do_not_contact,
            opted_out_of_calls=self.is_opted_out_of_calls,
            has_phone=bool(self.phone),
        )


def past_due_cutoff(at: dt.datetime) -> dt.date:
    """Every instalment past due somewhere at ``at`` is due before this date: no time zone's local day is later
    than the UTC date plus one (UTC+14 at most), and past due means due before the local day."""
    return at.astimezone(dt.timezone.utc).date() + dt.timedelta(days=1)


def loan_positions(
    loan_ids: Iterable[int], at: dt.datetime, tiers: dict[int, CreditTier]
) -> dict[int, LoanPosition]:
    """Positions of the given loans that are active and have an unpaid instalment past its due date (one query)."""
    cutoff = past_due_cutoff(at)
    rows = (
        Installment.objects.filter(
            loan_id__any_of=list(loan_ids),
            paid_at__isnull=True,
            due_date__lt=cutoff,
            loan__status=Loan.Status.ACTIVE,
        )
        .order_by("loan_id", "due_date", "seq")
        .values_list(
            "id",
            "loan_id",
            "due_date",
            "amount_due",
            "amount_paid",
            "loan__customer_id",
            "loan__customer__timezone",
            "loan__customer__tier_id",
            "loan__customer__do_not_contact",
            "loan__customer__opt_out_call",
            "loan__ref",
            "loan__customer__phone",
            "loan__customer__timezone_source",
        )
    )
    positions: dict[int, LoanPosition] = {}
    for row in rows:
        (
            inst_id,
            loan_id,
            due,
            amount_due,
            amount_paid,
            customer_id,
            tz_name,
            tier_id,
            dnc,
            no_calls,
            ref,
            phone,
            tz_source,
        ) = row
        pos = positions.get(loan_id)
        if pos is None:
            pos = positions[loan_id] = LoanPosition(
                loan_id=loan_id,
                customer_id=customer_id,
                tz_name=tz_name,
                tier_id=tier_id,
                grace_days=grace_days_of(tiers.get(tier_id)),
                is_do_not_contact=dnc,
                is_opted_out_of_calls=no_calls,
                today=local_date(at, tz_name),
                loan_ref=ref,
                phone=phone or "",
                is_timezone_given=tz_source == Customer.TimezoneSource.GIVEN,
            )
        if due < pos.today:
            pos.past_due_ids.append(inst_id)
            if pos.first_due_date is None or due < pos.first_due_date:
                pos.first_due_date = due
            pos.dpd = max(pos.dpd, days_past_due(due, pos.today))
            pos.amount_overdue += max(amount_due - amount_paid, ZERO)
    return {k: v for k, v in positions.items() if v.past_due_ids}


# --- calls: when one may be scheduled --------------------------------------------------------------------
def schedule_time(
    desired: dt.datetime, loan_id: int, callee: Callee, made: list[CallMade], book: RulesBook
) -> dt.datetime | None:
    """When a call task about ``loan_id`` is due: the first moment from ``desired`` the call limits and the
    contact window allow (``notifications.gates.earliest_call`` over the calls made); None when waiting
    cannot help (do-not-contact, opted out of calls, no phone)."""
    return earliest_call(desired, loan_id, made, callee, book.for_location(callee.location))


def call_priority(*, broken_promises: int, amount_overdue: Decimal, dpd: int) -> int:
    """Queue order as one number: broken promises first, then the amount overdue, then days past due."""
    return min(broken_promises, 9) * 10**14 + min(int(amount_overdue), 10**9 - 1) * 10**4 + min(dpd, 9999)


def collector_loads() -> dict[int, int]:
    """Active collectors (users allowed to record call outcomes) and their number of open call tasks."""
    perm = Permission.objects.filter(
        codename="record_call_outcome", content_type__app_label="collections"
    ).first()
    if perm is None:
        return {}
    User = get_user_model()
    ids = set(
        User.objects.filter(is_active=True)
        .filter(Q(groups__permissions=perm) | Q(user_permissions=perm))
        .values_list("pk", flat=True)
    )
    loads = dict.fromkeys(ids, 0)
    for user_id, n in (
        CallTask.objects.filter(status=CallTask.Status.OPEN, assigned_to_id__in=ids)
        .values_list("assigned_to_id")
        .annotate(n=Count("id"))
        .values_list("assigned_to_id", "n")
    ):
        loads[user_id] = n
    return loads


def pick_least_loaded(loads: dict[Any, int]) -> Any | None:
    """The key with the fewest open items (lowest id on a tie); its load grows by one."""
    if not loads:
        return None
    key = min(loads, key=lambda k: (loads[k], k))
    loads[key] += 1
    return key


# --- the daily job -------------------------------------------------------------------------------------
@dataclass
class _Run:
    now: dt.datetime
    actor: str
    tiers: dict[int, CreditTier]
    steps: dict[int, list[EscalationStep]]
    book: RulesBook
    counts: Counter
    _collectors: dict[int, int] | None = None
    _agencies: dict[int, int] | None = None

    @property
    def collectors(self) -> dict[int, int]:
        if self._collectors is None:
            self._collectors = collector_loads()
        return self._collectors

    @property
    def agencies(self) -> dict[int, int]:
        if self._agencies is None:
            self._agencies = {
                a.pk: a.n
                for a in Agency.objects.filter(is_active=True).annotate(
                    n=Count("placements", filter=Q(placements__recalled_at__isnull=True))
                )
            }
        return self._agencies


def advance_collections(
    now: dt.datetime,
    *,
    customer_id_range: tuple[int, int] | None = None,
    customer_ids: Iterable[int] | None = None,
) -> dict[str, int]:
    """Advance every overdue loan on its tier's ladder as of ``now`` (the daily collections job).

    ``customer_id_range`` (low inclusive, high exclusive) limits it to the loans of one chunk of customers, so
    several workers can advance disjoint chunks (``backoffice.tasks.run_chunk``); the two whole-book steps,
    resolving promises and the legal-freeze sweep, are then left to the caller (``collections_book_steps``).
    ``customer_ids`` limits the whole job, those two steps included, to the loans of those customers.

    Effects, chunk by chunk of loans, each chunk in one transaction: resolves promises (kept, broken, the
    reminder the day before); opens one case per loan past its grace period; closes cases whose overdue
    amount is paid; performs each reached step once (messages through ``notifications.notices.plan_notice``,
    call tasks assigned by load, agency placements, legal referrals that freeze the loan), skipping lower
    steps reached at the same time; keeps the queue priority current; cancels pending automatic contact of
    frozen loans. Paused cases (pending promise), frozen cases and do-not-contact customers do not move.
    Idempotent. Returns counts of what it did.
    """
    run = _Run(
        now=now,
        actor=JOB_ACTOR,
        tiers={t.pk: t for t in CreditTier.objects.all()},
        steps=defaultdict(list),
        book=RulesBook.load(),
        counts=Counter(),
    )
    for step in EscalationStep.objects.order_by("tier_id", "min_dpd", "id"):
        run.steps[step.tier_id].append(step)

    if customer_ids is not None:
        customer_ids = list(customer_ids)
    if customer_id_range is None:
        resolve_promises(now, actor=JOB_ACTOR, counts=run.counts, customer_ids=customer_ids)

    cutoff = past_due_cutoff(now)
    past_due = Installment.objects.filter(
        paid_at__isnull=True, due_date__lt=cutoff, loan__status=Loan.Status.ACTIVE
    )
    open_cases = CollectionCase.objects.open()
    if customer_id_range is not None:
        low, high = customer_id_range
        past_due = past_due.filter(loan__customer_id__gte=low, loan__customer_id__lt=high)
        open_cases = open_cases.filter(loan__customer_id__gte=low, loan__customer_id__lt=high)
    if customer_ids is not None:
        past_due = past_due.filter(loan__customer_id__any_of=customer_ids)
        open_cases = open_cases.filter(loan__customer_id__any_of=customer_ids)
    past_due_loans = set(past_due.values_list("loan_id", flat=True).distinct())
    open_case_loans = set(open_cases.values_list("loan_id", flat=True))
    loan_ids = sorted(past_due_loans | open_case_loans)
    totals = run.counts
    for start in range(0, len(loan_ids), CHUNK):
        for attempt in (1, 2):
            run.counts, run._collectors, run._agencies = Counter(), None, None
            try:
                with transaction.atomic():
                    _advance_chunk(loan_ids[start : start + CHUNK], run)
            except IntegrityError:
                # Another worker opened a case of this chunk first (the one-open-case constraint): its
                # transaction is committed now, so the second attempt finds and locks that case instead.
                if attempt == 2:
                    raise
                continue
            totals.update(run.counts)
            break
    run.counts = totals
    if customer_id_range is None:
        enforce_legal_freeze(now, actor=JOB_ACTOR, counts=run.counts, customer_ids=customer_ids)
    return {k: v for k, v in sorted(run.counts.items())}


def collections_book_steps(now: dt.datetime, *, before_chunks: bool) -> dict[str, int]:
    """The whole-book steps of the collections job when its chunks run on workers: resolving promises before
    the chunks (a broken promise lets its case move the same day), the legal-freeze sweep after (a contact
    planned for a loan frozen meanwhile is also refused at send time)."""
    counts: Counter = Counter()
    if before_chunks:
        resolve_promises(now, actor=JOB_ACTOR, counts=counts)
    else:
        enforce_legal_freeze(now, actor=JOB_ACTOR, counts=counts)
    return {k: v for k, v in sorted(counts.items())}


def _advance_chunk(loan_ids: list[int], run: _Run) -> None:
    now, actor, counts = run.now, run.actor, run.counts
    positions = loan_positions(loan_ids, now, run.tiers)
    cases = {
        c.loan_id: c
        for c in CollectionCase.objects.open().filter(loan_id__any_of=loan_ids).select_for_update()
    }
    events: list[Event] = []

    # Close what is no longer overdue: paid, or back inside grace after a payment (the oldest instalment past
    # due was paid, so the days past due dropped), or the loan was closed. A loan back inside grace only because
    # its customer moved to a tier with a longer grace period paid nothing: its case waits (see below).
    to_close = [
        c
        for loan_id, c in cases.items()
        if loan_id not in positions or (not positions[loan_id].is_overdue and positions[loan_id].dpd < c.dpd)
    ]
    if to_close:
        close_cases(to_close, at=now, actor=actor, counts=counts)
    # Open a case per loan past its grace period.
    new_cases = []
    for loan_id, pos in positions.items():
        if pos.is_overdue and loan_id not in cases:
            new_cases.append(
                CollectionCase(
                    loan_id=loan_id,
                    tier_id=pos.tier_id,
                    opened_at=now,
                    dpd=pos.dpd,
                    amount_overdue=pos.amount_overdue,
                )
            )
    if new_cases:
        CollectionCase.objects.bulk_create(new_cases)
        if any(c.pk is None for c in new_cases):  # backends that do not return ids from bulk inserts
            fresh = {
                c.loan_id: c
                for c in CollectionCase.objects.open().filter(loan_id__in=[c.loan_id for c in new_cases])
            }
            new_cases = [fresh[c.loan_id] for c in new_cases]
        counts["cases_opened"] += len(new_cases)
        for case in new_cases:
            pos = positions[case.loan_id]
            cases[case.loan_id] = case
            events.append(
                Event(
                    action="collections.case.opened",
                    actor=actor,
                    object_type="collections.CollectionCase",
                    object_id=str(case.pk),
                    at=now,
                    after={
                        "loan_id": case.loan_id,
                        "tier_id": pos.tier_id,
                        "dpd": pos.dpd,
                        "grace_period_days": pos.grace_days,
                        "amount_overdue": pos.amount_overdue,
                        "installment_ids": pos.past_due_ids,
                    },
                )
            )
    closed_ids = {c.pk for c in to_close}
    working = [c for c in cases.values() if c.pk not in closed_ids]
    if not working:
        log_events(events)
        return

    done_steps: dict[int, set[int]] = defaultdict(set)
    for case_id, step_id in CaseStepRun.objects.filter(case__any_of=[c.pk for c in working]).values_list(
        "case_id", "step_id"
    ):
        done_steps[case_id].add(step_id)
    open_tasks: dict[int, list[CallTask]] = defaultdict(list)
    for task in CallTask.objects.filter(
        case_id__any_of=[c.pk for c in working], status=CallTask.Status.OPEN
    ).only("id", "case_id", "scheduled_for", "status", "priority"):
        open_tasks[task.case_id].append(task)

    runs: list[CaseStepRun] = []
    messages: list[tuple[CollectionCase, EscalationStep, LoanPosition]] = []
    calls: list[tuple[CollectionCase, EscalationStep, LoanPosition]] = []
    placements: list[tuple[CollectionCase, EscalationStep]] = []
    referrals: list[tuple[CollectionCase, EscalationStep]] = []
    # The job runs many times a day: only cases whose numbers or stage moved are written.
    before = {c.pk: (c.dpd, c.amount_overdue, c.tier_id, c.stage) for c in working}
    for case in working:
        pos = positions[case.loan_id]
        case.dpd, case.amount_overdue, case.tier_id = pos.dpd, pos.amount_overdue, pos.tier_id
        if case.is_frozen or case.is_paused or pos.is_do_not_contact:
            counts["cases_on_hold"] += 1
            continue
        if not pos.is_overdue:  # inside the new tier's grace period: only grace reminders, no ladder step
            counts["cases_in_grace"] += 1
            continue
        reached = [
            s
            for s in run.steps.get(pos.tier_id, [])
            if s.min_dpd <= pos.dpd and s.pk not in done_steps[case.pk]
        ]
        if not reached:
            continue
        chosen = _choose_steps(reached)
        for step in reached:
            detail = chosen.get(step.pk, "")
            if detail != "perform":
                runs.append(_run_row(case, step, pos, now, CaseStepRun.Result.SKIPPED, detail))
                counts["steps_skipped"] += 1
                continue
            if step.action in MESSAGING_ACTIONS:
                messages.append((case, step, pos))
            elif step.action == EscalationStep.Action.CALL_TASK:
                if pos.is_opted_out_of_calls:
                    runs.append(_run_row(case, step, pos, now, CaseStepRun.Result.SKIPPED, "opted_out"))
                    counts["steps_skipped"] += 1
                    continue
                calls.append((case, step, pos))
            elif step.action == EscalationStep.Action.AGENCY:
                if not run.agencies:  # nobody to hand over to: the step waits for an agency
                    counts["agency_steps_without_agency"] += 1
                    continue
                placements.append((case, step))
            else:
                referrals.append((case, step))
            runs.append(_run_row(case, step, pos, now, CaseStepRun.Result.PERFORMED, ""))
            counts["steps_performed"] += 1
        top = max(reached, key=lambda s: (s.min_dpd, s.pk))
        if case.stage != top.stage:
            events.append(
                Event(
                    action="collections.case.stage_changed",
                    actor=actor,
                    object_type="collections.CollectionCase",
                    object_id=str(case.pk),
                    at=now,
                    before={"stage": case.stage},
                    after={
                        "stage": top.stage,
                        "step_id": top.pk,
                        "min_dpd": top.min_dpd,
                        "dpd": pos.dpd,
                        "tier_id": pos.tier_id,
                    },
                )
            )
            case.stage = top.stage

    CaseStepRun.objects.bulk_create(runs)
    for r in runs:
        events.append(
            Event(
                action="collections.step.performed"
                if r.result == CaseStepRun.Result.PERFORMED
                else "collections.step.skipped",
                actor=actor,
                object_type="collections.CollectionCase",
                object_id=str(r.case_id),
                at=now,
                after={
                    "step_id": r.step_id,
                    "action": r.action,
                    "stage": r.stage,
                    "min_dpd": r.min_dpd,
                    "dpd": r.dpd,
                    "reason": r.detail,
                },
            )
        )

    # Call tasks: one open task per case at most, assigned to the collector with the fewest open tasks.
    new_tasks = []
    made = calls_made({pos.customer_id for _case, _step, pos in calls}, now) if calls else {}
    for case, _step, pos in calls:
        if open_tasks.get(case.pk):
            counts["call_tasks_kept"] += 1
            continue
        when = schedule_time(now, case.loan_id, pos.callee(), made.get(pos.customer_id, []), run.book)
        if when is None:
            counts["call_tasks_not_callable"] += 1
            continue
        task = CallTask(
            case=case,
            assigned_to_id=pick_least_loaded(run.collectors),
            scheduled_for=when,
            created_at=now,
            priority=call_priority(
                broken_promises=case.broken_promises, amount_overdue=pos.amount_overdue, dpd=pos.dpd
            ),
        )
        new_tasks.append(task)
        open_tasks[case.pk].append(task)
    if new_tasks:
        CallTask.objects.bulk_create(new_tasks)
        counts["call_tasks_created"] += len(new_tasks)
        events.extend(
            Event(
                action="collections.call.scheduled",
                actor=actor,
                object_type="collections.CallTask",
                object_id=str(t.pk or ""),
                at=now,
                after={
                    "case_id": t.case_id,
                    "assigned_to_id": t.assigned_to_id,
                    "scheduled_for": t.scheduled_for,
                    "priority": t.priority,
                },
            )
            for t in new_tasks
        )

    # A customer who may no longer be called (put on do-not-contact or opted out of calls since the task was
    # made) leaves the collectors' queue.
    barred = {}
    for case in working:
        pos = positions[case.loan_id]
        reason = (
            "do_not_contact" if pos.is_do_not_contact else "opted_out" if pos.is_opted_out_of_calls else ""
        )
        if reason:
            for task in open_tasks.get(case.pk, []):
                if task.pk:
                    barred[task.pk] = (case, reason)
    if barred:
        for reason in {r for _c, r in barred.values()}:
            CallTask.objects.filter(
                pk__in=[pk for pk, (_c, r) in barred.items() if r == reason], status=CallTask.Status.OPEN
            ).update(status=CallTask.Status.CANCELLED, cancel_reason=reason)
        for case in {c.pk: c for c, _r in barred.values()}.values():
            open_tasks[case.pk] = []
        counts["call_tasks_cancelled"] += len(barred)
        events.extend(
            Event(
                action="collections.call.cancelled",
                actor=actor,
                object_type="collections.CallTask",
                object_id=str(pk),
                at=now,
                after={
                    "case_id": case.pk,
                    "reason": reason,
                    "customer_id": positions[case.loan_id].customer_id,
                },
            )
            for pk, (case, reason) in barred.items()
        )

    # Keep the queue order current for tasks already open.
    stale = []
    for case in working:
        prio = call_priority(
            broken_promises=case.broken_promises, amount_overdue=case.amount_overdue, dpd=case.dpd
        )
        for task in open_tasks.get(case.pk, []):
            if task.pk and task.priority != prio:
                task.priority = prio
                stale.append(task)
    if stale:
        bulk_update_rows(stale, ["priority"], batch_size=500)

    changed = [c for c in working if before[c.pk] != (c.dpd, c.amount_overdue, c.tier_id, c.stage)]
    for case in changed:
        case.updated_at = now
    if changed:
        bulk_update_rows(changed, ["dpd", "amount_overdue", "tier", "stage", "updated_at"], batch_size=500)
    log_events(events)

    if placements:
        by_agency: dict[int, list[CollectionCase]] = defaultdict(list)
        agencies = run.agencies
        for case, _step in placements:
            by_agency[pick_least_loaded(agencies)].append(case)
        for agency_id, agency_cases in by_agency.items():
            place_with_agency(
                agency_cases, Agency.objects.get(pk=agency_id), actor=actor, at=now, reason="ladder"
            )
            counts["cases_placed"] += len(agency_cases)
    if referrals:
        _refer_many_to_legal(
            [case for case, _step in referrals],
            actor=actor,
            at=now,
            note="ladder",
            stages={case.pk: step.stage for case, step in referrals},
        )
        counts["cases_referred_to_legal"] += len(referrals)
    if messages:
        _plan_step_messages(messages, now, actor)
        counts["messages_planned"] += len(messages)


def _run_row(case, step, pos, now, result, detail) -> CaseStepRun:
    return CaseStepRun(
        case=case,
        step=step,
        min_dpd=step.min_dpd,
        stage=step.stage,
        action=step.action,
        result=result,
        detail=detail,
        dpd=pos.dpd,
        run_at=now,
    )


def _choose_steps(reached: list[EscalationStep]) -> dict[int, str]:
    """Which of the steps reached at once are performed (``"perform"``) and why the others are skipped.

    Reaching several steps on one day (the case opened after grace, a promise broke, the tier changed) must
    not fire a burst: per action only the highest step is done; a legal referral makes an agency placement,
    messages and calls of the same day pointless.
    """
    decision: dict[int, str] = {}
    has_legal = any(s.action == EscalationStep.Action.LEGAL for s in reached)
    top_by_action: dict[str, EscalationStep] = {}
    for s in reached:
        cur = top_by_action.get(s.action)
        if cur is None or (s.min_dpd, s.pk) > (cur.min_dpd, cur.pk):
            top_by_action[s.action] = s
    for s in reached:
        if has_legal and s.action != EscalationStep.Action.LEGAL:
            decision[s.pk] = "superseded_by_legal"
        elif top_by_action[s.action].pk != s.pk:
            decision[s.pk] = "superseded"
        else:
            decision[s.pk] = "perform"
    return decision


def _plan_step_messages(
    messages: list[tuple[CollectionCase, EscalationStep, LoanPosition]], now: dt.datetime, actor: str
) -> None:
    """The ladder's SMS, email and push of this chunk, planned in the reminder engine's log in one batch: the cases
    of one customer reaching a message step the same day share one message per channel naming each loan."""
    from notifications.notices import Notice, plan_notices

    plan_notices(
        [
            Notice(
                customer_id=pos.customer_id,
                tier_id=pos.tier_id,
                tz_name=pos.tz_name,
                kind=step.kind,
                channel=step.action,
                # Per tier: after a tier change the old ladder's pending message is cancelled and the new one's planned.
                key_prefix=f"{LADDER_KEY_PREFIX}{pos.tier_id}:",
                installment_ids=list(pos.past_due_ids),
                loan_refs=[pos.loan_ref],
                due_date=pos.first_due_date,
            )
            for case, step, pos in messages
        ],
        now=now,
        actor=actor,
    )


def follow_tier_change(
    changes: list[tuple[int, int | None, int | None]], at: dt.datetime, actor: Any = "system"
) -> dict[str, int]:
    """Open cases of customers who moved tier follow the new tier's ladder (receiver of ``tier_changed``).

    ``changes`` are ``(customer_id, old_tier_id, new_tier_id)``. Effects: ladder messages not sent yet that the
    old tier planned are cancelled (``tier_changed``); an open call task is cancelled (``tier_changed``) when
    the new ladder has no call step at the case's days past due (a low-risk ladder calls later); the next run
    of the ladder performs the new tier's steps. Writes ``collections.case.tier_changed`` per open case and
    ``collections.call.cancelled`` per task. Returns counts.
    """
    from notifications.cancelling import cancel_pending

    actor = actor_name(actor)
    by_customer = {customer_id: (old, new) for customer_id, old, new in changes}
    by_new_tier: dict[int | None, list[int]] = defaultdict(list)
    for customer_id, (_old, new) in by_customer.items():
        by_new_tier[new].append(customer_id)
    counts: Counter = Counter()
    with transaction.atomic():
        for new, customer_ids in by_new_tier.items():
            counts["contacts_cancelled"] += cancel_pending(
                reason="tier_changed",
                actor=actor,
                at=at,
                customer_ids=customer_ids,
                dedupe_prefix=LADDER_KEY_PREFIX,
                except_tier_id=new,
                details_by_customer={
                    c: {"old_tier_id": by_customer[c][0], "new_tier_id": new} for c in customer_ids
                },
            )
        first_call_dpd: dict[int, int] = {}
        for tier_id, min_dpd in EscalationStep.objects.filter(
            tier_id__in=[t for t in by_new_tier if t is not None], action=EscalationStep.Action.CALL_TASK
        ).values_list("tier_id", "min_dpd"):
            first_call_dpd[tier_id] = min(min_dpd, first_call_dpd.get(tier_id, min_dpd))
        cases = list(
            CollectionCase.objects.open()
            .filter(loan__customer_id__any_of=list(by_customer))
            .select_related("loan")
            .select_for_update(of=("self",))
        )
        too_early = {
            c.pk for c in cases if c.dpd < first_call_dpd.get(by_customer[c.loan.customer_id][1], 10**6)
        }
        tasks = list(
            CallTask.objects.filter(case_id__in=too_early, status=CallTask.Status.OPEN).values_list(
                "pk", "case_id"
            )
        )
        if tasks:
            CallTask.objects.filter(pk__in=[pk for pk, _ in tasks]).update(
                status=CallTask.Status.CANCELLED, cancel_reason="tier_changed"
            )
        dpd_of = {c.pk: c.dpd for c in cases}
        events = [
            Event(
                action="collections.case.tier_changed",
                actor=actor,
                object_type="collections.CollectionCase",
                object_id=str(c.pk),
                at=at,
                before={"tier_id": by_customer[c.loan.customer_id][0]},
                after={"tier_id": by_customer[c.loan.customer_id][1], "stage": c.stage, "dpd": c.dpd},
            )
            for c in cases
        ]
        events.extend(
            Event(
                action="collections.call.cancelled",
                actor=actor,
                object_type="collections.CallTask",
                object_id=str(pk),
                at=at,
                after={"case_id": case_id, "reason": "tier_changed", "dpd": dpd_of[case_id]},
            )
            for pk, case_id in tasks
        )
        log_events(events)
    counts["call_tasks_cancelled"] += len(tasks)
    return dict(counts)


# --- closing -----------------------------------------------------------------------------------------------
def close_cases(
    cases: list[CollectionCase],
    *,
    at: dt.datetime,
    actor: Any,
    counts: Counter | None = None,
    payment_refs: dict[int, list[str]] | None = None,
) -> int:
    """Close open cases whose overdue amount is covered (or whose loan is no longer active).

    Effects: status ``closed`` (reason ``paid``, or ``loan_closed`` for a loan no longer active); open call
    tasks cancelled (they leave the queue) and pending promises kept; active agency placements recalled (reason
    ``paid``); pending contacts about the loan's paid instalments cancelled with reason ``paid``. Writes
    ``collections.case.closed`` (with the refs of the payments that cured it, from ``payment_refs`` by loan id),
    ``collections.call.cancelled`` per task and ``collections.promise.kept`` per promise.
    """
    from notifications.cancelling import cancel_pending

    actor = actor_name(actor)
    cases = [c for c in cases if c.is_open]
    if not cases:
        return 0
    ids = [c.pk for c in cases]
    loan_ids = [c.loan_id for c in cases]
    active_loans = set(
        Loan.objects.filter(pk__in=loan_ids, status=Loan.Status.ACTIVE).values_list("pk", flat=True)
    )
    paid_off = set(
        Loan.objects.filter(pk__in=loan_ids, status=Loan.Status.PAID_OFF).values_list("pk", flat=True)
    )
    with transaction.atomic():
        events = []
        for case in cases:
            reason = (
                CollectionCase.CloseReason.PAID
                if case.loan_id in active_loans or case.loan_id in paid_off
                else CollectionCase.CloseReason.LOAN_CLOSED
            )
            events.append(
                Event(
                    action="collections.case.closed",
                    actor=actor,
                    object_type="collections.CollectionCase",
                    object_id=str(case.pk),
                    at=at,
                    before={
                        "status": "open",
                        "stage": case.stage,
                        "dpd": case.dpd,
                        "amount_overdue": case.amount_overdue,
                    },
                    after={
                        "status": "closed",
                        "reason": reason,
                        **(
                            {"payment_refs": payment_refs[case.loan_id]}
                            if payment_refs and payment_refs.get(case.loan_id)
                            else {}
                        ),
                    },
                )
            )
            case.status, case.closed_at, case.close_reason, case.paused_until = (
                CollectionCase.Status.CLOSED,
                at,
                reason,
                None,
            )
        bulk_update_rows(cases, ["status", "closed_at", "close_reason", "paused_until", "updated_at"])
        tasks = list(
            CallTask.objects.filter(case_id__in=ids, status=CallTask.Status.OPEN).values_list("pk", "case_id")
        )
        cancelled = CallTask.objects.filter(
            pk__in=[pk for pk, _ in tasks], status=CallTask.Status.OPEN
        ).update(status=CallTask.Status.CANCELLED, cancel_reason=REASON_PAID)
        events.extend(
            Event(
                action="collections.call.cancelled",
                actor=actor,
                object_type="collections.CallTask",
                object_id=str(pk),
                at=at,
                after={"case_id": case_id, "reason": REASON_PAID},
            )
            for pk, case_id in tasks
        )
        kept = list(
            PromiseToPay.objects.filter(case_id__in=ids, status=PromiseToPay.Status.PENDING).values_list(
                "pk", "case_id"
            )
        )
        if kept:
            PromiseToPay.objects.filter(pk__in=[k for k, _ in kept]).update(
                status=PromiseToPay.Status.KEPT, resolved_at=at
            )
            events.extend(
                Event(
                    action="collections.promise.kept",
                    actor=actor,
                    object_type="collections.PromiseToPay",
                    object_id=str(pk),
                    at=at,
                    after={"case_id": case_id},
                )
                for pk, case_id in kept
            )
        for placement in AgencyPlacement.objects.filter(cases__in=ids, recalled_at__isnull=True).distinct():
            events.append(_recall_event(placement, actor, at, REASON_PAID))
            placement.recalled_at, placement.recalled_by, placement.recall_reason = at, actor, REASON_PAID
            placement.save(update_fields=["recalled_at", "recalled_by", "recall_reason"])
        log_events(events)
        paid_ids = list(
            Installment.objects.filter(loan_id__in=loan_ids, paid_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
        if paid_ids:
            cancel_pending(reason=REASON_PAID, actor=actor, at=at, installment_ids=paid_ids)
    if counts is not None:
        counts["cases_closed"] += len(cases)
        counts["call_tasks_cancelled"] += cancelled
    return len(cases)


def settle_payments(
    loan_ids: Iterable[int],
    at: dt.datetime,
    actor: Any = "system",
    payment_refs: dict[int, list[str]] | None = None,
) -> dict[str, int]:
    """React to money received on these loans (receiver of ``loans.signals.payments_recorded``, run inside the
    payment's transaction, so the cure is immediate).

    A payment that brings the loan out of arrears closes the case (see ``close_cases``: call tasks cancelled,
    contacts about the paid instalments cancelled as ``paid``, promises kept); a partial one keeps it open at
    its stage with the new amount; a pending promise covered by the payments since it was made is kept and the
    ladder resumes. Returns counts.
    """
    counts: Counter = Counter()
    loan_ids = sorted(set(loan_ids))
    tiers = {t.pk: t for t in CreditTier.objects.all()}
    for start in range(0, len(loan_ids), CHUNK):
        with transaction.atomic():
            cases = list(
                CollectionCase.objects.open()
                .filter(loan_id__in=loan_ids[start : start + CHUNK])
                .select_for_update()
            )
            if not cases:
                continue
            positions = loan_positions([c.loan_id for c in cases], at, tiers)
            to_close = [c for c in cases if c.loan_id not in positions or not positions[c.loan_id].is_overdue]
            close_cases(to_close, at=at, actor=actor, counts=counts, payment_refs=payment_refs)
            still_open = [c for c in cases if c not in to_close]
            for case in still_open:
                pos = positions[case.loan_id]
                case.dpd, case.amount_overdue, case.updated_at = pos.dpd, pos.amount_overdue, at
            bulk_update_rows(still_open, ["dpd", "amount_overdue", "updated_at"])
            _keep_covered_promises(still_open, at, actor_name(actor), counts)
    return dict(counts)


def _keep_covered_promises(cases: list[CollectionCase], at: dt.datetime, actor: str, counts: Counter) -> None:
    by_case = {c.pk: c for c in cases}
    promises = list(
        PromiseToPay.objects.filter(case_id__in=list(by_case), status=PromiseToPay.Status.PENDING)
    )
    if not promises:
        return
    events = []
    for promise in promises:
        case = by_case[promise.case_id]
        paid = (
            Payment.objects.filter(loan_id=case.loan_id, received_at__gte=promise.created_at).aggregate(
                s=Sum("amount")
            )["s"]
            or ZERO
        )
        if paid >= promise.amount:
            promise.status, promise.resolved_at = PromiseToPay.Status.KEPT, at
            promise.save(update_fields=["status", "resolved_at"])
            case.paused_until = None
            case.save(update_fields=["paused_until", "updated_at"])
            counts["promises_kept"] += 1
            events.append(
                Event(
                    action="collections.promise.kept",
                    actor=actor,
                    object_type="collections.PromiseToPay",
                    object_id=str(promise.pk),
                    at=at,
                    after={"case_id": case.pk, "amount": promise.amount, "paid_since_promise": paid},
                )
            )
    log_events(events)


# --- promises ------------------------------------------------------------------------------------------------
def resolve_promises(
    now: dt.datetime,
    *,
    actor: Any = JOB_ACTOR,
    counts: Counter | None = None,
    customer_ids: Iterable[int] | None = None,
) -> dict[str, int]:
    """Pending promises as of ``now`` (customer's local day): kept when paid since made; otherwise the day
    before the promised date a ``promise_reminder`` is planned, and the day after it the promise is broken, the
    case's broken-promise count grows, the ladder resumes and a collector calls again (the collector who took
    the promise, within the call limits). Writes ``collections.promise.*``. ``customer_ids`` limits it to the
    promises of those customers."""
    from notifications.notices import Notice, default_notice_channel, plan_notices

    counts = counts if counts is not None else Counter()
    actor = actor_name(actor)
    horizon = now.date() + dt.timedelta(days=3)
    promises = PromiseToPay.objects.filter(
        status=PromiseToPay.Status.PENDING,
        case__status=CollectionCase.Status.OPEN,
        promised_date__lte=horizon,
    ).select_related("case", "case__loan__customer__tier")
    if customer_ids is not None:
        promises = promises.filter(case__loan__customer_id__any_of=list(customer_ids))
    promises = list(promises)
    if not promises:
        return dict(counts)
    _keep_covered_promises(list({p.case_id: p.case for p in promises}.values()), now, actor, counts)
    for promise in promises:
        promise.refresh_from_db(fields=["status"])
        if promise.status != PromiseToPay.Status.PENDING:
            continue
        case = promise.case
        customer = case.loan.customer
        today = local_date(now, customer.timezone)
        if today > promise.promised_date:
            with transaction.atomic():
                promise.status, promise.resolved_at = PromiseToPay.Status.BROKEN, now
                promise.save(update_fields=["status", "resolved_at"])
                case.broken_promises += 1
                case.paused_until = None
                case.save(update_fields=["broken_promises", "paused_until", "updated_at"])
                log_event(
                    "collections.promise.broken",
                    actor=actor,
                    object_type="collections.PromiseToPay",
                    object_id=str(promise.pk),
                    at=now,
                    after={
                        "case_id": case.pk,
                        "amount": promise.amount,
                        "promised_date": promise.promised_date,
                        "customer_local_date": today,
                        "broken_promises": case.broken_promises,
                    },
                )
                if _schedule_follow_up_call(case, customer, promise, now, actor):
                    counts["call_tasks_created"] += 1
            counts["promises_broken"] += 1
        elif (
            today == promise.promised_date - dt.timedelta(days=1)
            and promise.reminder_planned_at is None
            and not case.is_frozen
        ):
            with transaction.atomic():
                installments = list(
                    Installment.objects.filter(
                        loan_id=case.loan_id, paid_at__isnull=True, due_date__lt=today
                    ).select_related("loan")
                )
                # Promises of one customer falling due the same day share one reminder naming each loan.
                plan_notices(
                    [
                        Notice(
                            customer_id=customer.pk,
                            tier_id=customer.tier_id,
                            tz_name=customer.timezone,
                            kind="promise_reminder",
                            channel=default_notice_channel(customer.tier),
                            key_prefix=PROMISE_KEY_PREFIX,
                            installment_ids=[i.pk for i in installments],
                            loan_refs=[case.loan.ref],
                            due_date=min((i.due_date for i in installments), default=None),
                        )
                    ],
                    now=now,
                    actor=actor,
                )
                promise.reminder_planned_at = now
                promise.save(update_fields=["reminder_planned_at"])
                log_event(
                    "collections.promise.reminder_planned",
                    actor=actor,
                    object_type="collections.PromiseToPay",
                    object_id=str(promise.pk),
                    at=now,
                    after={
                        "case_id": case.pk,
                        "promised_date": promise.promised_date,
                        "customer_local_date": today,
                    },
                )
            counts["promise_reminders_planned"] += 1
    return dict(counts)


def _schedule_follow_up_call(
    case: CollectionCase, customer: Customer, promise: PromiseToPay, now: dt.datetime, actor: str
) -> CallTask | None:
    """A call after a broken promise, unless one is open or the customer may not be called."""
    if customer.do_not_contact or customer.opt_out_call or case.is_frozen:
        return None
    if CallTask.objects.filter(case=case, status=CallTask.Status.OPEN).exists():
        return None
    when = schedule_time(
        now,
        case.loan_id,
        callee_of(customer, contacts_in_7_days=0),
        calls_made([customer.pk], now).get(customer.pk, []),
        RulesBook.load(),
    )
    if when is None:
        return None
    loads = collector_loads()
    assignee = promise.created_by_id if promise.created_by_id in loads else pick_least_loaded(loads)
    task = CallTask.objects.create(
        case=case,
        assigned_to_id=assignee,
        scheduled_for=when,
        created_at=now,
        priority=call_priority(
            broken_promises=case.broken_promises, amount_overdue=case.amount_overdue, dpd=case.dpd
        ),
    )
    log_event(
        "collections.call.scheduled",
        actor=actor,
        object_type="collections.CallTask",
        object_id=str(task.pk),
        at=now,
        after={
            "case_id": case.pk,
            "assigned_to_id": assignee,
            "scheduled_for": task.scheduled_for,
            "after": "promise_broken",
            "promise_id": promise.pk,
        },
    )
    return task


# --- call outcomes -------------------------------------------------------------------------------------------
class CallRefused(ValidationError):
    """The call may not be made at that moment (``reason``: a SPEC.md reason code, ``inputs``: what decided)."""

    def __init__(self, reason: str, inputs: dict):
        self.reason, self.inputs = reason, inputs
        super().__init__(f"This call may not be made now ({reason}).", code=reason, params={"reason": reason})


def record_call_outcome(
    task: CallTask,
    *,
    outcome: str,
    actor: Any,
    at: dt.datetime,
    note: str = "",
    promise_amount: Decimal | None = None,
    promise_date: dt.date | None = None,
    covers: Iterable[str] = (),
) -> CallTask:
    """Record a call attempt made at ``at`` and what came of it, in one go (the collector's form and
    ``manage.py record_call`` both call this).

    First the call is checked as it was made, by the same gates as a message plus the call limits
    (``notifications.gates.may_call`` over the calls actually made, for the task's loan and each loan in
    ``covers``, references of the same customer's other loans): a call that may not be made raises
    ``CallRefused`` with the reason code and nothing is recorded.

    Effects: a ``CallAttempt`` (counted by the call limits and the weekly contact cap) about the task's loan and
    the covered loans; the task is ``done`` with outcome, note, time and collector; a conversation (reached,
    promise, dispute, refused, stop_calling) blocks calls about each of those loans for the policy's pause;
    ``voicemail`` records the limited-content message left; ``promise_to_pay`` creates a pending
    ``PromiseToPay`` and pauses the ladder until the promised date; ``dispute`` puts the customer on
    ``do_not_contact`` (reason dispute), cancels their pending contacts and open call tasks; ``stop_calling``
    opts the customer out of calls at once and cancels their open call tasks; ``no_answer`` and ``voicemail``
    schedule a retry within the limits. Writes ``collections.call.recorded`` (and
    ``collections.promise.created`` / ``collections.customer.disputed`` / ``collections.customer.calls_stopped``
    / ``collections.call.scheduled``).

    Raises ``ValidationError`` when the task is not open, the outcome is unknown, a covered loan is not the
    customer's, or a promise lacks a positive amount or a date from today to 31 days ahead, or another promise
    is still pending.
    """
    user = actor if hasattr(actor, "pk") else None
    actor_str = actor_name(actor)
    if outcome not in CallTask.Outcome.values or outcome == "":
        raise ValidationError({"outcome": "Choose the outcome of the call."})
    with transaction.atomic():
        task = CallTask.objects.select_for_update().select_related("case__loan").get(pk=task.pk)
        if task.status != CallTask.Status.OPEN:
            raise ValidationError("This call task is no longer open.")
        case = task.case
        # Locked: two attempts on the same person are counted one after the other (the daily limit).
        customer = (
            Customer.objects.select_for_update(of=("self",))
            .select_related("tier")
            .get(pk=case.loan.customer_id)
        )
        covered = _covered_loans(customer, case.loan, covers)
        book = RulesBook.load()
        decision = decide_call(
            customer,
            [case.loan_id, *(loan.pk for loan in covered)],
            at,
            made=calls_made([customer.pk], at).get(customer.pk, []),
            contacts_in_7_days=contacts_in_last_7_days([customer.pk], at).get(customer.pk, 0),
            book=book,
        )
        if not decision.allowed:
            raise CallRefused(decision.reason, decision.inputs)
        today = local_date(at, customer.timezone)
        events = []
        promise = None
        if outcome == CallTask.Outcome.PROMISE_TO_PAY:
            errors = {}
            if promise_amount is None or Decimal(promise_amount) <= 0:
                errors["promise_amount"] = "Enter the amount promised."
            if promise_date is None:
                errors["promise_date"] = "Enter the date promised."
            elif not today <= promise_date <= today + dt.timedelta(days=PROMISE_MAX_DAYS_AHEAD):
                errors["promise_date"] = (
                    f"The promised date must be between today and {PROMISE_MAX_DAYS_AHEAD} days ahead."
                )
            if case.promises.filter(status=PromiseToPay.Status.PENDING).exists():
                errors["promise_date"] = "A promise of this case is still pending."
            if errors:
                raise ValidationError(errors)
            promise = PromiseToPay.objects.create(
                case=case,
                call_task=task,
                amount=Decimal(promise_amount),
                promised_date=promise_date,
                created_at=at,
                created_by=user,
            )
            case.paused_until = promise_date
            events.append(
                Event(
                    action="collections.promise.created",
                    actor=actor_str,
                    object_type="collections.PromiseToPay",
                    object_id=str(promise.pk),
                    at=at,
                    after={
                        "case_id": case.pk,
                        "amount": promise.amount,
                        "promised_date": promise_date,
                        "call_task_id": task.pk,
                    },
                )
            )
        is_conversation = outcome in CallTask.CONVERSATION_OUTCOMES
        voicemail = ""
        if outcome == CallTask.Outcome.VOICEMAIL:
            voicemail = voicemail_for(customer, user if user is not None else actor_str, book=book)
        attempt = CallAttempt.objects.create(
            customer=customer,
            task=task,
            made_at=at,
            outcome=outcome,
            is_conversation=is_conversation,
            voicemail_message=voicemail,
            made_by=actor_str,
        )
        loan_ids = [case.loan_id, *(loan.pk for loan in covered)]
        CallAttemptLoan.objects.bulk_create([CallAttemptLoan(attempt=attempt, loan_id=i) for i in loan_ids])
        task.status, task.outcome, task.note = CallTask.Status.DONE, outcome, note
        task.completed_at, task.completed_by = at, user
        task.save(update_fields=["status", "outcome", "note", "completed_at", "completed_by"])
        if is_conversation:
            case.last_conversation_at = at
            CollectionCase.objects.open().filter(loan_id__in=[loan.pk for loan in covered]).update(
                last_conversation_at=at, updated_at=at
            )
        case.save(update_fields=["paused_until", "last_conversation_at", "updated_at"])
        events.insert(
            0,
            Event(
                action="collections.call.recorded",
                actor=actor_str,
                object_type="collections.CallTask",
                object_id=str(task.pk),
                at=at,
                after={
                    "case_id": case.pk,
                    "loan_id": case.loan_id,
                    "covered_loan_refs": [loan.ref for loan in covered],
                    "call_attempt_id": attempt.pk,
                    "outcome": outcome,
                    "is_conversation": is_conversation,
                    "voicemail_message": voicemail,
                    "note": note,
                    "promise_amount": promise_amount,
                    "promise_date": promise_date,
                    "dpd": case.dpd,
                    "stage": case.stage,
                    "gates": decision.inputs,
                },
            ),
        )
        if outcome == CallTask.Outcome.DISPUTE:
            events.extend(_put_on_dispute_hold(customer, at, actor_str))
        elif outcome == CallTask.Outcome.STOP_CALLING:
            events.extend(_stop_calls(customer, at, actor_str, task))
        elif outcome in CallTask.RETRY_OUTCOMES and not customer.opt_out_call:
            made = calls_made([customer.pk], at).get(customer.pk, [])
            when = schedule_time(
                at + NO_ANSWER_RETRY_AFTER,
                case.loan_id,
                callee_of(customer, contacts_in_7_days=0),
                made,
                book,
            )
            if when is not None:
                retry = CallTask.objects.create(
                    case=case,
                    assigned_to=task.assigned_to,
                    scheduled_for=when,
                    created_at=at,
                    priority=call_priority(
                        broken_promises=case.broken_promises, amount_overdue=case.amount_overdue, dpd=case.dpd
                    ),
                )
                events.append(
                    Event(
                        action="collections.call.scheduled",
                        actor=actor_str,
                        object_type="collections.CallTask",
                        object_id=str(retry.pk),
                        at=at,
                        after={
                            "case_id": case.pk,
                            "assigned_to_id": retry.assigned_to_id,
                            "scheduled_for": when,
                            "after": outcome,
                        },
                    )
                )
        log_events(events)
    return task


def _covered_loans(customer: Customer, loan: Loan, refs: Iterable[str]) -> list[Loan]:
    """The customer's other loans a call covered, by reference; a reference that is not one of the customer's
    loans is refused (ValidationError on ``covers``)."""
    refs = [r.strip() for r in refs if r and r.strip() and r.strip() != loan.ref]
    if not refs:
        return []
    loans = {x.ref: x for x in Loan.objects.filter(customer=customer, ref__in=refs)}
    unknown = [r for r in dict.fromkeys(refs) if r not in loans]
    if unknown:
        raise ValidationError({"covers": f"Not a loan of this customer: {', '.join(unknown)}."})
    return [loans[r] for r in dict.fromkeys(refs)]


def _stop_calls(customer: Customer, at: dt.datetime, actor: str, task: CallTask) -> list[Event]:
    """The customer asked us to stop calling: opted out of calls at once, their open call tasks cancelled."""
    Customer.objects.filter(pk=customer.pk).update(opt_out_call=True, updated_at=at)
    cancelled = CallTask.objects.filter(case__loan__customer=customer, status=CallTask.Status.OPEN).update(
        status=CallTask.Status.CANCELLED, cancel_reason=REASON_OPTED_OUT
    )
    customer.opt_out_call = True
    return [
        Event(
            action="collections.customer.calls_stopped",
            actor=actor,
            object_type="loans.Customer",
            object_id=str(customer.pk),
            at=at,
            before={"opt_out_call": False},
            after={"opt_out_call": True, "call_task_id": task.pk, "call_tasks_cancelled": cancelled},
        )
    ]


def _put_on_dispute_hold(customer: Customer, at: dt.datetime, actor: str) -> list[Event]:
    from notifications.cancelling import cancel_pending

    before = {
        "do_not_contact": customer.do_not_contact,
        "do_not_contact_reason": customer.do_not_contact_reason,
    }
    Customer.objects.filter(pk=customer.pk).update(
        do_not_contact=True, do_not_contact_reason=Customer.DoNotContactReason.DISPUTE, updated_at=at
    )
    cancelled_tasks = CallTask.objects.filter(
        case__loan__customer=customer, status=CallTask.Status.OPEN
    ).update(status=CallTask.Status.CANCELLED, cancel_reason="dispute")
    cancelled = cancel_pending(reason=REASON_DO_NOT_CONTACT, actor=actor, at=at, customer_ids=[customer.pk])
    return [
        Event(
            action="collections.customer.disputed",
            actor=actor,
            object_type="loans.Customer",
            object_id=str(customer.pk),
            at=at,
            before=before,
            after={
                "do_not_contact": True,
                "do_not_contact_reason": "dispute",
                "pending_contacts_cancelled": cancelled,
                "call_tasks_cancelled": cancelled_tasks,
            },
        )
    ]


# --- agency and legal ------------------------------------------------------------------------------------
def place_with_agency(
    cases: Iterable[CollectionCase],
    agency: Agency,
    *,
    actor: Any,
    at: dt.datetime,
    reason: str = "manual",
) -> AgencyPlacement:
    """Hand open cases to ``agency`` as one placement, with the CSV file the agency receives (masked unless
    its contract allows personal data, formula cells escaped). Writes ``collections.case.placed`` per case.

    Raises ``ValidationError`` for closed or frozen cases, cases already placed, or an inactive agency.
    """
    from .placements import placement_csv

    actor_str = actor_name(actor)
    cases = list(cases)
    if not agency.is_active:
        raise ValidationError("This agency takes no new placements.")
    if not cases:
        raise ValidationError("Choose at least one case.")
    with transaction.atomic():
        ids = [c.pk for c in cases]
        locked = list(CollectionCase.objects.select_for_update().filter(pk__in=ids))
        bad = [c.pk for c in locked if not c.is_open or c.is_frozen]
        if bad:
            raise ValidationError(f"Cases {bad} are closed or with legal and cannot be placed.")
        already = sorted(
            set(
                AgencyPlacement.cases.through.objects.filter(
                    collectioncase_id__in=ids, agencyplacement__recalled_at__isnull=True
                ).values_list("collectioncase_id", flat=True)
            )
        )
        if already:
            raise ValidationError(f"Cases {already} are already placed with an agency.")
        placement = AgencyPlacement.objects.create(agency=agency, placed_at=at, placed_by=actor_str)
        placement.cases.set(locked)
        placement.file, placement.file_sha256 = placement_csv(placement)
        placement.save(update_fields=["file", "file_sha256"])
        log_events(
            Event(
                action="collections.case.placed",
                actor=actor_str,
                object_type="collections.CollectionCase",
                object_id=str(c.pk),
                at=at,
                after={
                    "placement_id": placement.pk,
                    "agency": agency.code,
                    "masked": not agency.may_see_personal_data,
                    "dpd": c.dpd,
                    "amount_overdue": c.amount_overdue,
                    "reason": reason,
                    "file_sha256": placement.file_sha256,
                },
            )
            for c in locked
        )
    return placement


def _recall_event(placement: AgencyPlacement, actor: str, at: dt.datetime, reason: str) -> Event:
    return Event(
        action="collections.placement.recalled",
        actor=actor,
        object_type="collections.AgencyPlacement",
        object_id=str(placement.pk),
        at=at,
        before={"recalled_at": None},
        after={
            "recalled_at": at,
            "reason": reason,
            "case_ids": list(placement.cases.values_list("pk", flat=True)),
        },
    )


def recall_placement(
    placement: AgencyPlacement, *, actor: Any, at: dt.datetime, reason: str = "recalled"
) -> AgencyPlacement:
    """Take the cases back from the agency. Writes ``collections.placement.recalled``.
    Raises ``ValidationError`` when already recalled."""
    actor_str = actor_name(actor)
    with transaction.atomic():
        placement = AgencyPlacement.objects.select_for_update().get(pk=placement.pk)
        if placement.recalled_at:
            raise ValidationError("This placement was already recalled.")
        log_events([_recall_event(placement, actor_str, at, reason)])
        placement.recalled_at, placement.recalled_by, placement.recall_reason = at, actor_str, reason
        placement.save(update_fields=["recalled_at", "recalled_by", "recall_reason"])
    return placement


def refer_to_legal(
    case: CollectionCase, *, actor: Any, at: dt.datetime, note: str = "", stage: str = "legal"
) -> LegalReferral:
    """Refer an open case to legal and freeze all automatic contact for its loan.

    Effects: a ``LegalReferral``; the case is frozen at stage ``legal``; open call tasks cancelled; active
    agency placements recalled (reason ``legal``); pending contacts about the loan cancelled (reason
    ``do_not_contact``). Writes ``collections.case.referred_to_legal``. Raises ``ValidationError`` for a
    closed or already referred case.
    """
    with transaction.atomic():
        locked = CollectionCase.objects.select_for_update().get(pk=case.pk)
        if not locked.is_open:
            raise ValidationError("A closed case cannot be referred to legal.")
        if LegalReferral.objects.filter(case=locked).exists():
            raise ValidationError("This case was already referred to legal.")
        [referral] = _refer_many_to_legal([locked], actor=actor, at=at, note=note, stages={locked.pk: stage})
    return referral


def _refer_many_to_legal(
    cases: list[CollectionCase], *, actor: Any, at: dt.datetime, note: str, stages: dict[int, str]
) -> list[LegalReferral]:
    """``refer_to_legal`` for open cases not yet referred (the caller checked), a fixed number of queries for
    any number of cases (the daily ladder refers a day's cohort at once)."""
    from notifications.cancelling import cancel_pending

    actor_str = actor_name(actor)
    ids = [c.pk for c in cases]
    with transaction.atomic():
        referrals = LegalReferral.objects.bulk_create(
            [
                LegalReferral(
                    case=c,
                    referred_at=at,
                    referred_by=actor_str,
                    dpd=c.dpd,
                    amount_overdue=c.amount_overdue,
                    note=note,
                )
                for c in cases
            ]
        )
        if any(r.pk is None for r in referrals):  # backends that do not return ids from bulk inserts
            by_case = {r.case_id: r for r in LegalReferral.objects.filter(case_id__in=ids)}
            referrals = [by_case[c.pk] for c in cases]
        before = {c.pk: {"stage": c.stage, "is_frozen": c.is_frozen} for c in cases}
        for c in cases:
            c.is_frozen, c.paused_until, c.stage, c.updated_at = True, None, stages.get(c.pk, "legal"), at
        bulk_update_rows(cases, ["is_frozen", "paused_until", "stage", "updated_at"], batch_size=500)
        tasks_by_case = Counter(
            CallTask.objects.filter(case_id__in=ids, status=CallTask.Status.OPEN).values_list(
                "case_id", flat=True
            )
        )
        CallTask.objects.filter(case_id__in=ids, status=CallTask.Status.OPEN).update(
            status=CallTask.Status.CANCELLED, cancel_reason="legal"
        )
        events = [
            Event(
                action="collections.case.referred_to_legal",
                actor=actor_str,
                object_type="collections.CollectionCase",
                object_id=str(c.pk),
                at=at,
                before=before[c.pk],
                after={
                    "referral_id": r.pk,
                    "is_frozen": True,
                    "dpd": c.dpd,
                    "amount_overdue": c.amount_overdue,
                    "call_tasks_cancelled": tasks_by_case[c.pk],
                    "note": note,
                },
            )
            for c, r in zip(cases, referrals, strict=True)
        ]
        placements = list(AgencyPlacement.objects.filter(cases__in=ids, recalled_at__isnull=True).distinct())
        for placement in placements:
            events.append(_recall_event(placement, actor_str, at, "legal"))
            placement.recalled_at, placement.recalled_by, placement.recall_reason = at, actor_str, "legal"
        if placements:
            bulk_update_rows(placements, ["recalled_at", "recalled_by", "recall_reason"])
        log_events(events)
        installment_ids = list(
            Installment.objects.filter(loan_id__in=[c.loan_id for c in cases]).values_list("pk", flat=True)
        )
        cancel_pending(reason=REASON_DO_NOT_CONTACT, actor=actor_str, at=at, installment_ids=installment_ids)
    return referrals


def enforce_legal_freeze(
    now: dt.datetime,
    *,
    actor: Any = JOB_ACTOR,
    counts: Counter | None = None,
    customer_ids: Iterable[int] | None = None,
) -> int:
    """Cancel whatever automatic contact was planned for loans frozen by legal since the last run (of the loans
    of ``customer_ids`` when given)."""
    from notifications.cancelling import cancel_pending
    from notifications.models import NotificationItem, NotificationLog

    # Only the instalments some pending contact lists can change anything (the planner leaves frozen loans
    # out), so the daily run reads those rather than every instalment frozen since the first referral.
    pending = NotificationItem.objects.filter(
        notification__status__in=NotificationLog.PENDING_STATUSES
    ).values("installment_id")
    frozen = Installment.objects.filter(
        paid_at__isnull=True,
        loan__collection_cases__status=CollectionCase.Status.OPEN,
        loan__collection_cases__is_frozen=True,
        pk__in=pending,
    )
    if customer_ids is not None:
        frozen = frozen.filter(loan__customer_id__any_of=list(customer_ids))
    rows = frozen.order_by("loan__customer_id", "pk").values_list("loan__customer_id", "pk").distinct()
    # A consolidated contact lists a customer's loans together: a chunk never splits a customer.
    chunks: list[list[int]] = [[]]
    last_customer = None
    for customer_id, installment_id in rows:
        if customer_id != last_customer and len(chunks[-1]) >= CHUNK:
            chunks.append([])
        chunks[-1].append(installment_id)
        last_customer = customer_id
    cancelled = 0
    for ids in chunks:
        if ids:
            cancelled += (
                cancel_pending(
                    reason=REASON_DO_NOT_CONTACT, actor=actor_name(actor), at=now, installment_ids=ids
                )
                or 0
            )
    if counts is not None and cancelled:
        counts["contacts_cancelled_frozen"] += cancelled
    return cancelled
