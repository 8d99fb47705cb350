"""A call attempt recorded with what came of it: checked by the gates as it was made, then the attempt, the
task done, a promise, a dispute or a stop-calling request, and a retry after no answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import Event, about, actor_name, log_events
from loans.models import Customer, Loan
from loans.schedule import local_date
from notifications.cancelling import cancel_pending
from notifications.compliance import RulesBook, contacts_in_last_7_days
from notifications.models import NotificationLog

from .calls import CallRequest, calls_made, cancel_call_tasks, decide_call, schedule_calls, voicemail_for
from .models import CallAttempt, CallAttemptLoan, CallTask, CollectionCase, PromiseToPay

# After "no answer" the next attempt is a few hours later (the contact window and the weekly cap still apply).
NO_ANSWER_RETRY_AFTER = dt.timedelta(hours=4)
PROMISE_MAX_DAYS_AHEAD = 31


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
    (``notifications.compliance.may_call`` over the calls actually made, for the task's loan and each loan in
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
                    **about(PromiseToPay, promise.pk),
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
                **about(CallTask, task.pk),
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
                    "dpd": case.days_past_due(today),
                    "stage": case.stage,
                    "gates": decision.inputs,
                },
            ),
        )
        log_events(events)
        if outcome == CallTask.Outcome.DISPUTE:
            _put_on_dispute_hold(customer, at, actor_str)
        elif outcome == CallTask.Outcome.STOP_CALLING:
            _stop_calls(customer, at, actor_str, task)
        elif outcome in CallTask.RETRY_OUTCOMES:
            retry = CallRequest(
                case, customer.pk, at + NO_ANSWER_RETRY_AFTER, lambda: task.assigned_to_id, {"after": outcome}
            )
            schedule_calls([retry], at=at, actor=actor_str, book=book)
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


def _stop_calls(customer: Customer, at: dt.datetime, actor: str, task: CallTask) -> None:
    """The customer asked us to stop calling: opted out of calls at once, their open call tasks cancelled."""
    Customer.objects.filter(pk=customer.pk).update(opt_out_call=True, updated_at=at)
    cancelled = cancel_call_tasks(
        CallTask.objects.filter(case__loan__customer=customer),
        CallTask.CancelReason.OPTED_OUT,
        at=at,
        actor=actor,
    ).total()
    customer.opt_out_call = True
    log_events(
        [
            Event(
                action="collections.customer.calls_stopped",
                actor=actor,
                **about(Customer, customer.pk),
                at=at,
                before={"opt_out_call": False},
                after={"opt_out_call": True, "call_task_id": task.pk, "call_tasks_cancelled": cancelled},
            )
        ]
    )


def _put_on_dispute_hold(customer: Customer, at: dt.datetime, actor: str) -> None:
    before = {
        "do_not_contact": customer.do_not_contact,
        "do_not_contact_reason": customer.do_not_contact_reason,
    }
    Customer.objects.filter(pk=customer.pk).update(
        do_not_contact=True, do_not_contact_reason=Customer.DoNotContactReason.DISPUTE, updated_at=at
    )
    cancelled_tasks = cancel_call_tasks(
        CallTask.objects.filter(case__loan__customer=customer),
        CallTask.CancelReason.DISPUTE,
        at=at,
        actor=actor,
    ).total()
    cancelled = cancel_pending(
        reason=NotificationLog.Reason.DO_NOT_CONTACT, actor=actor, at=at, customer_ids=[customer.pk]
    )
    log_events(
        [
            Event(
                action="collections.customer.disputed",
                actor=actor,
                **about(Customer, customer.pk),
                at=at,
                before=before,
                after={
                    "do_not_contact": True,
                    "do_not_contact_reason": Customer.DoNotContactReason.DISPUTE,
                    "pending_contacts_cancelled": cancelled,
                    "call_tasks_cancelled": cancelled_tasks,
                },
            )
        ]
    )
