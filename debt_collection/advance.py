"""The daily advance: every overdue loan walks its tier's ladder (``ladder.steps_to_perform``), chunk by chunk of
loans, each chunk in one transaction (a customer's new tier: ``tier_changes``).

Safe to run twice for the same moment: a case is unique per open loan, a step runs once per case
(``CaseStepRun``), a contact once per ``dedupe_key`` in the reminder engine's log. Every decision is written to
the audit trail (``collections.*``) in the same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from core.audit import Event, about, append_events
from core.bulk import bulk_update_rows
from core.lookups import within_bounds
from loans.models import CreditTier, Installment, Loan
from notifications.compliance import RulesBook
from notifications.notices import Notice, plan_notices

from .calls import (
    CallRequest,
    barred_calls,
    cancel_call_tasks,
    case_priority,
    collector_loads,
    pick_least_loaded,
    schedule_calls,
)
from .closing import close_cases
from .ladder import LADDER_KEY_PREFIX, done_steps, steps_to_perform
from .legal import enforce_legal_freeze, refer_many_to_legal
from .models import (
    MESSAGING_ACTIONS,
    Agency,
    AgencyPlacement,
    CallTask,
    CaseStepRun,
    CollectionCase,
    EscalationStep,
)
from .placements import place_with_agency
from .policy_versions import CaseVersions
from .positions import CHUNK, JOB_ACTOR, LoanPosition, loan_positions, past_due_cutoff
from .promises import resolve_promises

Skip = CaseStepRun.SkipReason


@dataclass
class _Run:
    now: dt.datetime
    actor: str
    tiers: dict[int, CreditTier]
    steps: dict[int, list[EscalationStep]]
    book: RulesBook
    counts: Counter
    versions: CaseVersions
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
    amount is paid; performs each reached step once (messages through ``notifications.notices.plan_notices``,
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
        versions=CaseVersions.load(),
    )
    for step in EscalationStep.objects.order_by("tier_id", "min_dpd", "id"):
        run.steps[step.tier_id].append(step)

    if customer_ids is not None:
        customer_ids = list(customer_ids)
    if customer_id_range is None:
        resolve_promises(now, actor=JOB_ACTOR, counts=run.counts, customer_ids=customer_ids)

    # The active loans with an unpaid instalment past due, as a semi-join: the unpaid instalments past due by
    # their partial index, each loan once. Joined and made DISTINCT instead, PostgreSQL took the unpaid
    # instalments for a quarter of the book (most are the ones not yet due) and walked every instalment in
    # loan order to merge them with the loans (3 s at 1,000,000 loans, 0.8 s this way).
    past_due = Loan.objects.filter(
        status=Loan.Status.ACTIVE,
        pk__in=Installment.objects.filter(paid_at__isnull=True, due_date__lt=past_due_cutoff(now)).values(
            "loan_id"
        ),
    )
    open_cases = CollectionCase.objects.open()
    if customer_id_range is not None:
        low, high = customer_id_range
        past_due = past_due.filter(customer_id__gte=low, customer_id__lt=high)
        open_cases = open_cases.filter(loan__customer_id__gte=low, loan__customer_id__lt=high)
    if customer_ids is not None:
        past_due = past_due.filter(customer_id__any_of=customer_ids)
        open_cases = open_cases.filter(loan__customer_id__any_of=customer_ids)
    past_due_loans = set(past_due.order_by().values_list("pk", flat=True))
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
    # Bounded: without it PostgreSQL read every case of a 100,000-loan book for each chunk of 2,000 loans.
    cases = {
        c.loan_id: c
        for c in CollectionCase.objects.open()
        .filter(within_bounds("loan_id", loan_ids), loan_id__any_of=loan_ids)
        .select_for_update()
    }
    events: list[Event] = []

    # Close what is no longer overdue: paid, or back inside grace after a payment (the oldest instalment past
    # due was paid, so the days past due dropped), or the loan was closed. A loan back inside grace only because
    # its customer moved to a tier with a longer grace period paid nothing: its case waits (see below).
    to_close = [
        c
        for loan_id, c in cases.items()
        if loan_id not in positions
        or (not positions[loan_id].is_overdue and positions[loan_id].first_due_date > c.oldest_due_date)
    ]
    if to_close:
        close_cases(to_close, at=now, actor=actor, counts=counts)
    # Open a case per loan past its grace period, under its customer's arm's version.
    new_cases = []
    version_of = run.versions.of_opening(
        [p for loan_id, p in positions.items() if p.is_overdue and loan_id not in cases]
    )
    for loan_id, pos in positions.items():
        if pos.is_overdue and loan_id not in cases:
            new_cases.append(
                CollectionCase(
                    loan_id=loan_id,
                    tier_id=pos.tier_id,
                    policy_version_id=version_of.get(pos.customer_id),
                    opened_at=now,
                    oldest_due_date=pos.first_due_date,
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
                    **about(CollectionCase, case.pk),
                    at=now,
                    after={
                        "loan_id": case.loan_id,
                        "tier_id": pos.tier_id,
                        "policy_version_id": case.policy_version_id,
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
        append_events(events)
        return

    done_ids: dict[int, set[int]] = defaultdict(set)
    done_keys: dict[int, set[tuple[int, str]]] = defaultdict(set)
    # Unordered: the step runs' default order is by their case's opening, a join that read every case of the
    # book for each chunk (170 ms a chunk at 1,000,000 loans).
    for case_id, step_id, min_dpd, action in (
        CaseStepRun.objects.filter(case_id__any_of=[c.pk for c in working])
        .order_by()
        .values_list("case_id", "step_id", "min_dpd", "action")
    ):
        if step_id is None:
            done_keys[case_id].add((min_dpd, action))
        else:
            done_ids[case_id].add(step_id)
    run.versions.follow(working, positions, run.steps)
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
    # Only cases whose numbers or stage moved are written: days past due grow by themselves (counted from
    # ``oldest_due_date`` when read), so a day on which nothing happened to a case writes nothing.
    before = {
        c.pk: (c.oldest_due_date, c.amount_overdue, c.tier_id, c.stage, c.policy_version_id) for c in working
    }
    for case in working:
        pos = positions[case.loan_id]
        case.oldest_due_date, case.amount_overdue, case.tier_id = (
            pos.first_due_date,
            pos.amount_overdue,
            pos.tier_id,
        )
        if case.is_frozen or case.is_paused or pos.is_do_not_contact:
            counts["cases_on_hold"] += 1
            continue
        if not pos.is_overdue:  # inside the new tier's grace period: only grace reminders, no ladder step
            counts["cases_in_grace"] += 1
            continue
        ladder = run.versions.ladder_of(case, pos.tier_id, run.steps)
        done = done_steps(ladder, done_ids[case.pk], done_keys[case.pk])
        perform, passed = steps_to_perform(ladder, pos.dpd, pos.grace_days, done)
        if not perform:
            continue
        for step in passed:
            runs.append(_run_row(case, step, pos, now, CaseStepRun.Result.SKIPPED, Skip.SUPERSEDED))
            counts["steps_skipped"] += 1
        for step in perform:
            if step.action in MESSAGING_ACTIONS:
                messages.append((case, step, pos))
            elif step.action == EscalationStep.Action.CALL_TASK:
                if pos.is_opted_out_of_calls:
                    runs.append(_run_row(case, step, pos, now, CaseStepRun.Result.SKIPPED, Skip.OPTED_OUT))
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
        top = max(perform, key=lambda s: (s.min_dpd, s.pk))
        if case.stage != top.stage:
            events.append(
                Event(
                    action="collections.case.stage_changed",
                    actor=actor,
                    **about(CollectionCase, case.pk),
                    at=now,
                    before={"stage": case.stage},
                    after={
                        "stage": top.stage,
                        "step_id": top.pk,
                        "min_dpd": top.min_dpd,
                        "dpd": pos.dpd,
                        "tier_id": pos.tier_id,
                        "policy_version_id": case.policy_version_id,
                    },
                )
            )
            case.stage = top.stage

    CaseStepRun.objects.bulk_create(runs)
    version_of = {c.pk: c.policy_version_id for c in working}
    for r in runs:
        events.append(
            Event(
                action="collections.step.performed"
                if r.result == CaseStepRun.Result.PERFORMED
                else "collections.step.skipped",
                actor=actor,
                **about(CollectionCase, r.case_id),
                at=now,
                after={
                    "step_id": r.step_id,
                    "action": r.action,
                    "stage": r.stage,
                    "min_dpd": r.min_dpd,
                    "dpd": r.dpd,
                    "reason": r.detail,
                    "policy_version_id": version_of[r.case_id],
                },
            )
        )

    # A customer who may no longer be called (put on do-not-contact or opted out of calls since the task was
    # made, as the gate chain says) leaves the collectors' queue. Only those two flags can bar a call for good
    # (``barred_calls``), so only the customers with one of them set are asked.
    customer_of = {c.pk: positions[c.loan_id].customer_id for c in working}
    barred = barred_calls(
        {
            c.loan_id: customer_of[c.pk]
            for c in working
            if open_tasks.get(c.pk)
            and (positions[c.loan_id].is_do_not_contact or positions[c.loan_id].is_opted_out_of_calls)
        },
        now,
        run.book,
    )
    for reason in sorted(set(barred.values())):
        cancelled = cancel_call_tasks(
            CallTask.objects.filter(case_id__in=[c.pk for c in working if barred.get(c.loan_id) == reason]),
            CallTask.CancelReason(reason),
            at=now,
            actor=actor,
            details=lambda case_id: {"customer_id": customer_of[case_id]},
        )
        for case_id in cancelled:
            open_tasks[case_id] = []
        counts["call_tasks_cancelled"] += cancelled.total()

    # Call tasks: one open task per case at most, assigned to the collector with the fewest open tasks.
    requests = []
    for case, _step, pos in calls:
        if open_tasks.get(case.pk):
            counts["call_tasks_kept"] += 1
            continue
        requests.append(CallRequest(case, pos.customer_id, now, lambda: pick_least_loaded(run.collectors)))
    new_tasks = schedule_calls(requests, at=now, actor=actor, book=run.book)
    for task in new_tasks:
        open_tasks[task.case_id].append(task)
    if new_tasks:
        counts["call_tasks_created"] += len(new_tasks)
    if len(requests) > len(new_tasks):
        counts["call_tasks_not_callable"] += len(requests) - len(new_tasks)

    # Keep the queue order current for tasks already open.
    stale = []
    for case in working:
        prio = case_priority(case)
        for task in open_tasks.get(case.pk, []):
            if task.pk and task.priority != prio:
                task.priority = prio
                stale.append(task)
    if stale:
        bulk_update_rows(stale, ["priority"], batch_size=500)

    changed = [
        c
        for c in working
        if before[c.pk] != (c.oldest_due_date, c.amount_overdue, c.tier_id, c.stage, c.policy_version_id)
    ]
    for case in changed:
        case.updated_at = now
    if changed:
        bulk_update_rows(
            changed,
            ["oldest_due_date", "amount_overdue", "tier", "stage", "policy_version", "updated_at"],
            batch_size=500,
        )
    append_events(events)

    if placements:
        by_agency: dict[int, list[CollectionCase]] = defaultdict(list)
        agencies = run.agencies
        for case, _step in placements:
            by_agency[pick_least_loaded(agencies)].append(case)
        for agency_id, agency_cases in by_agency.items():
            place_with_agency(
                agency_cases,
                Agency.objects.get(pk=agency_id),
                actor=actor,
                at=now,
                reason=AgencyPlacement.Reason.LADDER,
            )
            counts["cases_placed"] += len(agency_cases)
    if referrals:
        refer_many_to_legal(
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
        step_id=step.pk,
        min_dpd=step.min_dpd,
        stage=step.stage,
        action=step.action,
        result=result,
        detail=detail,
        dpd=pos.dpd,
        run_at=now,
    )


def _plan_step_messages(
    messages: list[tuple[CollectionCase, EscalationStep, LoanPosition]], now: dt.datetime, actor: str
) -> None:
    """The ladder's SMS, email and push of this chunk, planned in the reminder engine's log in one batch: the cases
    of one customer reaching a message step the same day share one message per channel naming each loan."""
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
                policy_version_id=case.policy_version_id,
            )
            for case, step, pos in messages
        ],
        now=now,
        actor=actor,
    )
