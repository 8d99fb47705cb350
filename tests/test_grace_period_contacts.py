"""Inside the grace period only grace reminders go out and no case opens; after it the case opens."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from backoffice.jobs import run_pipeline
from core.models import AuditEvent
from debt_collection.models import CollectionCase
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog, ReminderRule
from notifications.planning import plan_contacts

from .factories import make_tier
from .factories_collections import make_ladder
from .factories_reminders import LOS_ANGELES, SHANGHAI, local, logs_of, make_debtor, make_rule, make_template

pytestmark = pytest.mark.django_db

Status = NotificationLog.Status
DUE = dt.date(2026, 12, 1)


def on_day(n: int, hour: int = 10, tz: str = SHANGHAI) -> dt.datetime:
    d = DUE + dt.timedelta(days=n)
    return local(tz, d.year, d.month, d.day, hour)


def test_inside_the_grace_period_only_grace_reminders_go_out_and_no_case_opens():
    tier = make_tier(grace_period_days=3, max_contacts_per_week=20)
    make_rule(tier, -1, "sms", kind="pre_due")
    make_rule(tier, 0, "sms", kind="due_today")
    make_rule(tier, 2, "sms", kind="grace")
    make_rule(tier, 5, "sms", kind="overdue")
    # Written when the grace period was 1 day; the tier's period was lengthened since.
    ReminderRule.objects.bulk_create([ReminderRule(tier=tier, offset_days=2, channel="push", kind="overdue")])
    make_ladder(tier, [(1, "early", "sms", "overdue")])
    for kind in ("pre_due", "due_today", "grace", "overdue"):
        for channel in ("sms", "push"):
            make_template(kind, channel, "zh-hans")
    customer, [inst] = make_debtor(tier, due_date=DUE)

    sent_by_day, cases_by_day = {}, {}
    for n in range(-1, 6):
        run_pipeline(on_day(n, hour=0) + dt.timedelta(minutes=30))
        run_pipeline(on_day(n, hour=10, tz=SHANGHAI) + dt.timedelta(minutes=30))
        sent_by_day[n] = sorted(
            log.kind
            for log in logs_of(customer)
            if log.status == Status.SENT and log.sent_at.astimezone(customer.zone).date() == on_day(n).date()
        )
        cases_by_day[n] = CollectionCase.objects.filter(loan=inst.loan).exists()

    assert sent_by_day == {
        -1: ["pre_due"],
        0: ["due_today"],
        1: [],
        2: ["grace"],
        3: [],
        4: ["overdue"],  # the case opened the day after grace: the ladder's early SMS
        5: ["overdue"],  # the tier's own overdue reminder
    }
    assert [cases_by_day[n] for n in range(-1, 6)] == [False] * 5 + [True] * 2
    assert not NotificationLog.objects.filter(channel="push").exists()


def test_an_overdue_rule_inside_the_grace_period_is_refused():
    tier = make_tier(grace_period_days=3)
    rule = ReminderRule(tier=tier, offset_days=3, channel="sms", kind="overdue")
    with pytest.raises(ValidationError) as exc:
        rule.full_clean()
    assert "grace period" in str(exc.value.message_dict["offset_days"])
    ReminderRule(tier=tier, offset_days=4, channel="sms", kind="overdue").full_clean()


@pytest.mark.parametrize(
    "kind, offset, send_on_day, expected",
    [
        ("due_today", 0, 1, (Status.CANCELLED, "expired")),  # carried past the due date
        ("pre_due", -1, 0, (Status.SENT, "")),  # the day before, sent late on the due date: still true
        ("grace", 3, 4, (Status.CANCELLED, "expired")),  # carried past the grace period
        ("grace", 2, 3, (Status.SENT, "")),  # the last day of grace: still true
    ],
)
def test_a_reminder_carried_past_its_day_is_not_sent(kind, offset, send_on_day, expected):
    tier = make_tier(grace_period_days=3)
    make_rule(tier, offset, "sms", kind=kind, send_time=dt.time(20, 59))
    make_template(kind, "sms", "zh-hans")
    customer, _ = make_debtor(tier, due_date=DUE, timezone=LOS_ANGELES)
    plan_contacts(on_day(offset, hour=1, tz=LOS_ANGELES))
    # The dispatch of the evening came too late: deferred to the next morning's opening.
    dispatch_due(on_day(offset, hour=21, tz=LOS_ANGELES))
    [log] = logs_of(customer)
    assert log.status == Status.DEFERRED

    dispatch_due(on_day(send_on_day, hour=8, tz=LOS_ANGELES))

    [log] = logs_of(customer)
    assert (log.status, log.reason) == expected
    if expected[0] == Status.CANCELLED:
        event = AuditEvent.objects.get(action="notifications.contact.cancelled", object_id=str(log.id))
        assert event.after["reason"] == "expired" and event.after["kind"] == kind
