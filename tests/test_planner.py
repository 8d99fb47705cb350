from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.models import AuditEvent
from loans.models import Installment, Loan
from notifications.models import NotificationItem, NotificationLog
from notifications.planning import plan_contacts

from .factories import make_customer, make_installment, make_loan, make_tier
from .factories_reminders import LOS_ANGELES, SHANGHAI, local, logs_of, make_debtor, make_rule

pytestmark = pytest.mark.django_db

DUE = dt.date(2026, 12, 1)


def test_it_plans_one_message_per_channel_listing_every_loan_due_the_same_day():
    tier = make_tier()
    make_rule(tier, -3, "sms")
    make_rule(tier, -3, "push")
    customer, installments = make_debtor(tier, loans=2, due_date=DUE)

    result = plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))

    logs = logs_of(customer)
    assert [log.channel for log in logs] == ["push", "sms"]
    refs = ",".join(sorted(i.loan.ref for i in installments))
    for log in logs:
        assert log.kind == "pre_due"
        assert log.status == NotificationLog.Status.PLANNED
        assert log.due_date == DUE and log.offset_days == -3
        assert log.loan_refs == refs
        assert set(log.installments.all()) == set(installments)
    assert result["planned"] == 2 and result["customers"] == 1


def test_planning_twice_adds_nothing():
    tier = make_tier()
    make_rule(tier, -3)
    make_debtor(tier, loans=2, due_date=DUE)
    now = local(SHANGHAI, 2026, 11, 28, 9)

    plan_contacts(now)
    second = plan_contacts(now + dt.timedelta(hours=3))

    assert NotificationLog.objects.count() == 1
    assert NotificationItem.objects.count() == 2
    assert second["planned"] == 0 and second["already_planned"] == 1
    assert AuditEvent.objects.filter(action="notifications.contact.planned").count() == 1


def test_it_schedules_at_the_rules_local_send_time_in_each_customers_time_zone():
    tier = make_tier()
    make_rule(tier, -1, send_time=dt.time(9, 30))
    shanghai, _ = make_debtor(tier, due_date=DUE, timezone=SHANGHAI)
    los_angeles, _ = make_debtor(tier, due_date=DUE, timezone=LOS_ANGELES)

    # 2026-11-30 04:00 UTC is noon in Shanghai and 20:00 the day before in Los Angeles.
    plan_contacts(dt.datetime(2026, 11, 30, 4, 0, tzinfo=dt.UTC))
    assert [log.scheduled_for for log in logs_of(shanghai)] == [
        dt.datetime(2026, 11, 30, 1, 30, tzinfo=dt.UTC)
    ]
    assert logs_of(los_angeles) == []  # its local day is still the 29th: two days before, no rule

    # 2026-11-30 16:00 UTC: the 30th in Los Angeles (08:00), already December 1st in Shanghai.
    plan_contacts(dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC))
    assert [log.scheduled_for for log in logs_of(los_angeles)] == [
        dt.datetime(2026, 11, 30, 17, 30, tzinfo=dt.UTC)
    ]
    assert len(logs_of(shanghai)) == 1


@pytest.mark.parametrize(
    "day, expected_utc",
    [
        # Pacific daylight time ends on 2026-11-01: 10:00 local is 17:00 UTC the day before, 18:00 UTC that day.
        (dt.date(2026, 10, 31), dt.datetime(2026, 10, 31, 17, 0, tzinfo=dt.UTC)),
        (dt.date(2026, 11, 1), dt.datetime(2026, 11, 1, 18, 0, tzinfo=dt.UTC)),
        # It starts again on 2027-03-14: 10:00 local is 18:00 UTC the day before, 17:00 UTC that day.
        (dt.date(2027, 3, 13), dt.datetime(2027, 3, 13, 18, 0, tzinfo=dt.UTC)),
        (dt.date(2027, 3, 14), dt.datetime(2027, 3, 14, 17, 0, tzinfo=dt.UTC)),
    ],
)
def test_the_local_send_time_stays_right_across_a_dst_change_in_los_angeles(day, expected_utc):
    tier = make_tier()
    make_rule(tier, -3, send_time=dt.time(10, 0))
    customer, _ = make_debtor(tier, due_date=day + dt.timedelta(days=3), timezone=LOS_ANGELES)

    plan_contacts(local(LOS_ANGELES, day.year, day.month, day.day, 0, 30))

    [log] = logs_of(customer)
    assert log.scheduled_for == expected_utc
    assert log.scheduled_for.astimezone(customer.zone).time() == dt.time(10, 0)


def test_it_never_back_fills_days_already_past():
    tier = make_tier()
    make_rule(tier, -7)
    make_rule(tier, -3)
    customer, _ = make_debtor(tier, due_date=DUE)

    plan_contacts(local(SHANGHAI, 2026, 11, 28, 12))  # the -3 day; the -7 day (Nov 24) is past

    assert [log.offset_days for log in logs_of(customer)] == [-3]


def test_it_plans_nothing_for_paid_instalments_or_loans_no_longer_active():
    tier = make_tier()
    make_rule(tier, 0)
    paid_customer, [paid] = make_debtor(tier, due_date=DUE)
    Installment.objects.filter(id=paid.id).update(
        paid_at=local(SHANGHAI, 2026, 11, 30, 12), amount_paid=paid.amount_due
    )
    written_off, [inst] = make_debtor(tier, due_date=DUE)
    Loan.objects.filter(id=inst.loan_id).update(status=Loan.Status.WRITTEN_OFF)
    active, _ = make_debtor(tier, due_date=DUE)

    plan_contacts(local(SHANGHAI, 2026, 12, 1, 7))

    assert logs_of(paid_customer) == [] and logs_of(written_off) == []
    assert [log.kind for log in logs_of(active)] == ["due_today"]


def test_it_follows_the_rules_of_the_customers_own_tier_and_the_rules_kind():
    low = make_tier(grace_period_days=5)
    high = make_tier(grace_period_days=5)
    make_rule(low, 2, kind="grace")
    make_rule(high, 2, kind="grace", channel="push")
    make_rule(high, 2, kind="grace", channel="sms", is_active=False)
    low_customer, _ = make_debtor(low, due_date=DUE)
    high_customer, _ = make_debtor(high, due_date=DUE)

    plan_contacts(local(SHANGHAI, 2026, 12, 3, 6))

    assert [(log.channel, log.kind, log.tier_id) for log in logs_of(low_customer)] == [
        ("sms", "grace", low.id)
    ]
    assert [(log.channel, log.kind, log.tier_id) for log in logs_of(high_customer)] == [
        ("push", "grace", high.id)
    ]


def test_it_keeps_instalments_due_on_different_days_apart():
    tier = make_tier()
    make_rule(tier, 0)
    make_rule(tier, -1)
    customer = make_customer(tier=tier)
    today = make_installment(make_loan(customer), due_date=DUE)
    tomorrow = make_installment(make_loan(customer), due_date=DUE + dt.timedelta(days=1))

    plan_contacts(local(SHANGHAI, 2026, 12, 1, 7))

    logs = {log.offset_days: log for log in logs_of(customer)}
    assert list(logs[0].installments.all()) == [today]
    assert list(logs[-1].installments.all()) == [tomorrow]


def test_it_writes_what_it_planned_to_the_audit_trail():
    tier = make_tier()
    make_rule(tier, -3)
    customer, [inst] = make_debtor(tier, due_date=DUE)

    plan_contacts(local(SHANGHAI, 2026, 11, 28, 9))

    [log] = logs_of(customer)
    event = AuditEvent.objects.get(action="notifications.contact.planned")
    assert event.object_id == str(log.id) and event.actor == "job:plan_contacts"
    assert event.after["customer_id"] == customer.id
    assert event.after["installment_ids"] == [inst.id]
    assert event.after["scheduled_for"].startswith("2026-11-28T02:00:00")


def _loan_book(size: int):
    tiers = [make_tier(), make_tier()]
    for tier in tiers:
        make_rule(tier, -3, "sms")
        make_rule(tier, -3, "email")
    zones = [SHANGHAI, LOS_ANGELES]
    for n in range(size):
        customer = make_customer(tier=tiers[n % 2], timezone=zones[n % 2])
        # Every other customer has two loans due the same day.
        for _ in range(1 + n % 2):
            make_installment(make_loan(customer), due_date=DUE, amount_due=Decimal("100.00"))


@pytest.mark.parametrize("size", [10, 200])
def test_planning_takes_the_same_number_of_queries_for_10_and_200_loans(size, django_assert_max_num_queries):
    _loan_book(size)
    # 2026-11-28 04:00 UTC is the 28th in Shanghai and (barely) the 27th in Los Angeles: plan both days.
    now = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)
    # 18: the planner's fixed queries plus the contact rules (the policy and the jurisdictions' rules) and the
    # tiers' champion/challenger tests.
    with django_assert_max_num_queries(18):
        plan_contacts(now)
    with django_assert_max_num_queries(18):
        plan_contacts(now + dt.timedelta(days=1))
    assert NotificationLog.objects.count() == 2 * size


def test_chunks_never_split_the_loans_of_one_customer(monkeypatch):
    monkeypatch.setattr("notifications.planning.PLAN_CHUNK", 2)
    tier = make_tier()
    make_rule(tier, -3, "sms")
    make_rule(tier, -3, "email")
    customers = [make_debtor(tier, loans=1 + n % 3, due_date=DUE)[0] for n in range(7)]

    result = plan_contacts(local(SHANGHAI, 2026, 11, 28, 9))

    assert result["planned"] == 14
    for customer in customers:
        loans = customer.loans.count()
        assert [log.installments.count() for log in logs_of(customer)] == [loans, loans]


def test_a_loan_loaded_after_its_day_was_planned_joins_the_message_not_yet_sent():
    from notifications.dispatch import dispatch_due
    from notifications.models import OutboxMessage

    from .factories_reminders import make_template

    tier = make_tier(max_contacts_per_week=1)
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customer, [first] = make_debtor(tier, due_date=DUE)
    plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))
    late = make_installment(make_loan(customer), due_date=DUE)

    result = plan_contacts(local(SHANGHAI, 2026, 11, 28, 9, 0))

    assert result["extended"] == 1 and result["planned"] == 0
    [log] = logs_of(customer)
    assert sorted(log.installments.values_list("id", flat=True)) == [first.id, late.id]
    assert log.loan_refs == f"{first.loan.ref},{late.loan.ref}"
    event = AuditEvent.objects.get(action="notifications.contact.extended")
    assert event.after["added_installment_ids"] == [late.id]
    assert "extended" not in plan_contacts(local(SHANGHAI, 2026, 11, 28, 9, 30))  # nothing more the next time
    dispatch_due(local(SHANGHAI, 2026, 11, 28, 10, 5))
    body = OutboxMessage.objects.get().body  # the cap of 1 still lets both loans be reminded
    assert first.loan.ref in body and late.loan.ref in body


def test_a_contact_already_sent_is_not_extended():
    from notifications.dispatch import dispatch_due

    from .factories_reminders import make_template

    tier = make_tier()
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customer, [first] = make_debtor(tier, due_date=DUE)
    plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))
    dispatch_due(local(SHANGHAI, 2026, 11, 28, 10, 5))
    make_installment(make_loan(customer), due_date=DUE)

    result = plan_contacts(local(SHANGHAI, 2026, 11, 28, 11, 0))

    assert "extended" not in result
    [log] = logs_of(customer)
    assert list(log.installments.values_list("id", flat=True)) == [first.id]
