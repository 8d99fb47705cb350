"""The shadow replay runs the real engine over days the real pipeline ran: under the same policy it counts what
happened, payments and calls that really came are applied at their moment, and nothing of it is kept."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from core.models import AuditChainHead, AuditEvent
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import (
    CallAttempt,
    CallTask,
    CaseStepRun,
    CollectionCase,
    EscalationStep,
    PromiseToPay,
)
from loans.models import Installment, Loan, Payment, PaymentAllocation, PolicyVersion
from loans.services import record_payment
from notifications.models import (
    NotificationItem,
    NotificationLog,
    OutboxMessage,
    ReminderRule,
    ReminderTemplate,
)
from strategy.policy import parse_ladder
from strategy.replay import replay_policy, replay_sample, set_aside
from tests import test_policy_preview as preview_book
from tests.factories import make_customer, make_installment, make_loan, make_tier, make_user
from tests.test_policy_preview import END, START, midnight

tier = preview_book.tier  # the preview's book, as a fixture of this module

TODAY = END + dt.timedelta(days=1)  # the replay of the last 10 days is START..END


def run_history(start: dt.date, end: dt.date, happenings=()) -> None:
    """The real pipeline day by day (``run_jobs --now`` at each local midnight and each moment a contact comes
    due), with ``happenings`` (moment, callable) done at their moments in between: the book's real history."""
    pending = sorted(happenings, key=lambda h: h[0])
    for offset in range((end - start).days + 1):
        day = start + dt.timedelta(days=offset)
        at, day_end = midnight(day), midnight(day + dt.timedelta(days=1))
        while pending and pending[0][0] <= at:
            pending.pop(0)[1]()
        while at is not None:
            call_command("run_jobs", now=at.isoformat(), force=True, stdout=io.StringIO())
            due = (
                NotificationLog.objects.pending()
                .filter(scheduled_for__gt=at, scheduled_for__lt=day_end)
                .aggregate(at=Min("scheduled_for"))["at"]
            )
            while pending and pending[0][0] < day_end and (due is None or pending[0][0] <= due):
                pending.pop(0)[1]()
            at = due


def paying(loan_ref: str, at: dt.datetime, ref: str):
    def pay():
        loan = Loan.objects.get(ref=loan_ref)
        record_payment(loan=loan, amount=Decimal("500.00"), received_at=at, ref=ref)

    return at, pay


def calling(loan_ref: str, at: dt.datetime, outcome: str):
    def call():
        task = CallTask.objects.open().get(case__loan__ref=loan_ref)
        record_call_outcome(task, outcome=outcome, actor="collector-1", at=at)

    return at, call


def at(day: int, hour: int) -> dt.datetime:
    return midnight(dt.date(2026, 7, day)) + dt.timedelta(hours=hour)


# Alice pays both loans on 4 July at 09:00, before her day-before reminder goes out at 10:00; erin pays on 6 July
# after a call on 5 July that nobody answered.
PAYMENTS = [
    paying("A-1", at(4, 9), "PAY-A1"),
    paying("A-2", at(4, 9), "PAY-A2"),
    paying("E-1", at(6, 12), "PAY-E1"),
]
CALLS = [calling("E-1", at(5, 11), "no_answer")]


def test_replaying_the_saved_policy_counts_what_happened(tier):
    run_history(START, END)

    result = replay_policy(tier, today=TODAY, days=10)

    assert (result["start"], result["end"]) == (START, END)
    assert result["current"].as_spec() == {
        "contacts": {
            "sent": 5,
            "deferred": 0,
            "suppressed": {"do_not_contact": 3, "frequency_cap": 1, "opted_out": 1},
            "cancelled": {},
        },
        "escalations": {"call_task": 1, "sms": 1},
    }
    assert result["proposed"].as_spec() == result["current"].as_spec()
    assert result["proposed"].per_day == result["current"].per_day
    assert result["proposed"].call_tasks == result["current"].call_tasks == 1
    assert result["changed_loans"] == []
    assert result["sample"] == {"customers": 4, "loans": 5}


def test_payments_and_calls_that_came_mid_range_are_replayed_as_they_happened(tier):
    run_history(START, END, PAYMENTS + CALLS)
    assert (
        NotificationLog.objects.filter(status="cancelled", reason="paid").count() == 1
    )  # alice's 4 July SMS
    assert CallTask.objects.filter(status="cancelled", cancel_reason="paid").count() == 1  # erin's retry

    result = replay_policy(tier, today=TODAY, days=10)

    happened, replayed = result["current"], result["proposed"]
    assert happened.contacts[("cancelled", "paid")] == 1
    assert happened.calls == Counter({"no_answer": 1})
    assert replayed.as_spec() == happened.as_spec()
    assert replayed.calls == happened.calls and replayed.call_tasks == happened.call_tasks == 2
    assert replayed.per_loan == happened.per_loan
    assert result["replay"]["payments_replayed"] == 3
    assert result["replay"]["calls_not_replayed"] == Counter()


def book_state() -> dict:
    """What the book holds that a replay puts back: every row's state, by id."""
    return {
        "cases": sorted(
            CollectionCase.objects.values_list(
                "id",
                "status",
                "closed_at",
                "close_reason",
                "stage",
                "paused_until",
                "broken_promises",
                "is_frozen",
                "last_conversation_at",
            )
        ),  # fmt: skip
        "tasks": sorted(
            CallTask.objects.values_list("id", "status", "outcome", "cancel_reason", "completed_at")
        ),
        "steps": sorted(CaseStepRun.objects.values_list("id", flat=True)),
        "calls": sorted(CallAttempt.objects.values_list("id", flat=True)),
        "promises": sorted(PromiseToPay.objects.values_list("id", "status", "resolved_at")),
        "installments": sorted(Installment.objects.values_list("id", "amount_paid", "paid_at")),
        "loans": sorted(Loan.objects.values_list("id", "status", "credit")),
        "payments": sorted(Payment.objects.values_list("ref", flat=True)),
        "contacts": sorted(NotificationLog.objects.values_list("id", "status", "reason")),
    }


def test_the_book_is_put_back_as_it_stood_when_the_first_day_began(tier):
    since, seen = midnight(dt.date(2026, 7, 6)), {}
    run_history(START, END, [*PAYMENTS, *CALLS, (since, lambda: seen.update(book_state()))])
    assert (
        book_state()["tasks"] != seen["tasks"] and book_state()["loans"] != seen["loans"]
    )  # the days moved it
    assert CallTask.objects.filter(cancel_reason="paid").exists()  # erin's retry, opened on 5 July

    with transaction.atomic():
        set_aside(replay_sample(tier, 50, since - dt.timedelta(days=1)), since)
        restored = book_state()
        transaction.set_rollback(True)
    result = replay_policy(tier, today=TODAY, days=5)

    assert restored == seen
    assert result["proposed"].as_spec() == result["current"].as_spec()
    assert result["proposed"].per_loan == result["current"].per_loan


def test_a_lower_cap_shows_more_frequency_cap_suppressions(tier):
    run_history(START, END, PAYMENTS)

    result = replay_policy(tier, today=TODAY, days=10, max_contacts_per_week=1)

    assert result["is_changed"]
    assert (
        result["proposed"].contacts[("suppressed", "frequency_cap")]
        > result["current"].contacts[("suppressed", "frequency_cap")]
    )
    assert result["proposed"].sent < result["current"].sent
    assert result["changed_loans"]


def test_a_call_the_replayed_ladder_has_no_task_for_is_not_made(tier):
    run_history(START, END, CALLS)
    version = PolicyVersion.objects.filter(tier=tier).latest("number")

    later = replay_policy(
        tier, today=TODAY, days=10, ladder=parse_ladder("1,sms,early\n8,sms,firm\n20,call_task")
    )
    same = replay_policy(tier, today=TODAY, days=10, version=version)

    assert later["current"].calls == Counter({"no_answer": 1})
    assert later["proposed"].calls == Counter() and later["proposed"].call_tasks == 0
    assert later["replay"]["calls_not_replayed"] == Counter({"no_call_task": 1})
    assert [row["loan_ref"] for row in later["changed_loans"]] == ["E-1"]
    assert same["proposed"].calls == Counter({"no_answer": 1}) and same["changed_loans"] == []


def test_the_replay_writes_nothing_and_sends_nothing(tier, settings):
    run_history(START, END, PAYMENTS + CALLS)
    settings.NOTIFICATION_BACKENDS = dict.fromkeys(
        ("sms", "email", "push"), "tests.test_policy_preview.Refuse"
    )
    tables = (
        NotificationLog,
        NotificationItem,
        AuditEvent,
        OutboxMessage,
        CollectionCase,
        CaseStepRun,
        CallTask,
    )
    tables += (CallAttempt, PromiseToPay, Payment, PaymentAllocation, PolicyVersion)

    def state():
        return (
            [model.objects.count() for model in tables],
            AuditChainHead.objects.values_list("seq", "hash").get(id=1),
            sorted(Installment.objects.values_list("id", "amount_paid", "paid_at")),
            sorted(Loan.objects.values_list("id", "status", "credit")),
            sorted(NotificationLog.objects.values_list("id", "status", "reason", "scheduled_for")),
            sorted(CollectionCase.objects.values_list("id", "status", "closed_at", "stage")),
            sorted(CallTask.objects.values_list("id", "status", "outcome", "cancel_reason")),
        )

    before = state()

    result = replay_policy(tier, today=TODAY, days=10, grace_period_days=10)

    assert result["proposed"].messages_delivered > 0  # into memory only
    assert state() == before


def test_it_refuses_a_range_beyond_the_bound_or_another_tiers_version(tier):
    with pytest.raises(ValidationError, match="1 to 62 days"):
        replay_policy(tier, today=TODAY, days=63)
    other = PolicyVersion.objects.exclude(tier=tier).first()
    if other is None:
        make_tier(code="OTHER")
        other = PolicyVersion.objects.exclude(tier=tier).first()
    with pytest.raises(ValidationError, match="another tier"):
        replay_policy(tier, today=TODAY, days=5, version=other)


def test_the_command_replays_the_last_days_in_json(tier):
    run_history(START, END, PAYMENTS)
    out = io.StringIO()

    call_command(
        "preview_policy", "MID", "--replay-days", "10", "--now", midnight(TODAY).isoformat(), "--format", "json",
        "--max-contacts-per-week", "1", stdout=out,
    )  # fmt: skip

    figures = json.loads(out.getvalue())
    assert set(figures) == {"replay", "happened", "replayed", "changed_loans"}
    assert figures["replay"]["from"] == "2026-07-01" and figures["replay"]["to"] == "2026-07-10"
    assert figures["happened"]["contacts"]["cancelled"] == {"paid": 1}
    assert figures["happened"]["calls"] == {}
    assert figures["replayed"]["contacts"]["suppressed"]["frequency_cap"] > 1
    assert figures["changed_loans"]


def make_recent_book(today: dt.date):
    """A tier whose last week really ran: dora's two loans due 3 days ago (one message for both, paid the day
    after), finn's loan overdue since 6 days ago (a ladder SMS, then a call task, called once)."""
    tier = make_tier(code="RECENT", name="Recent", grace_period_days=1, max_contacts_per_week=4)
    for offset, channel in ((-3, "sms"), (-1, "sms"), (-1, "push")):
        ReminderRule.objects.create(
            tier=tier, offset_days=offset, channel=channel, kind="pre_due", send_time=dt.time(10)
        )
    for kind, channel in (("pre_due", "sms"), ("pre_due", "push"), ("overdue", "sms")):
        ReminderTemplate.objects.get_or_create(
            kind=kind, channel=channel, language="zh-hans", body="{customer_name} {loans}"
        )
    EscalationStep.objects.create(tier=tier, min_dpd=2, stage="early", action="sms", kind="overdue")
    EscalationStep.objects.create(tier=tier, min_dpd=3, stage="call", action="call_task")
    dora = make_customer(tier=tier, ref="DORA")
    make_installment(make_loan(dora, ref="D-1"), due_date=today - dt.timedelta(days=3))
    make_installment(make_loan(dora, ref="D-2"), due_date=today - dt.timedelta(days=3))
    finn = make_customer(tier=tier, ref="FINN")
    make_installment(make_loan(finn, ref="F-1"), due_date=today - dt.timedelta(days=6))
    paid = midnight(today - dt.timedelta(days=2)) + dt.timedelta(hours=9)
    called = midnight(today - dt.timedelta(days=1)) + dt.timedelta(hours=11)
    run_history(
        today - dt.timedelta(days=7),
        today - dt.timedelta(days=1),
        [paying("D-1", paid, "PAY-D1"), paying("D-2", paid, "PAY-D2"), calling("F-1", called, "reached")],
    )
    return tier


PAGE_PARAMS = {
    "run": "1",
    "mode": "replay",
    "replay_days": "7",
    "start": "2026-07-01",
    "end": "2026-07-10",
    "sample_size": "50",
    "grace_period_days": "1",
    "max_contacts_per_week": "1",
    "channel_order": "sms,push,email",
    "rules": "-3,sms,pre_due,10:00\n-1,sms,pre_due,10:00\n-1,push,pre_due,10:00",
    "ladder": "2,sms,early\n3,call_task,call",
}


def test_the_tier_page_replays_the_last_days_beside_what_happened(client, db):
    tier = make_recent_book(timezone.localdate())
    user = make_user("planner")
    user.user_permissions.add(Permission.objects.get(codename="view_credittier"))
    client.force_login(user)
    url = f"/admin/loans/credittier/{tier.pk}/preview/"

    html = client.get(url, PAGE_PARAMS).content.decode()

    assert 'data-mode="replay"' in html and "What happened" in html and "Replayed" in html
    assert (
        cells(html, "frequency_cap")[0] == 0 < cells(html, "frequency_cap")[1]
    )  # happened, replayed at a cap of 1
    assert cells(html, "call:reached") == [1, 0, -1]  # the real call, refused by the cap of 1 in the replay
    assert "2 real payments applied" in html and "1 real call not made" in html
    chinese = client.get(url, PAGE_PARAMS, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "实际发生" in chinese and "回放结果" in chinese and "2 笔真实还款已按到账时刻入账" in chinese
    client.force_login(make_user("outsider"))
    assert client.get(url, PAGE_PARAMS).status_code == 403


def cells(html: str, code: str) -> list[int]:
    """The numbers of the comparison's row ``code``: what happened, replayed, the change."""
    row = html.split(f'data-code="{code}"')[1].split("</tr>")[0]
    return [int(cell.split(">")[-1]) for cell in row.split("</td>")[:-1]]
