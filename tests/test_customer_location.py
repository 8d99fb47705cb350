"""Conflicting or missing location (Regulation F comment 6(b)(1)(i)-2): a customer is contacted only at a time
convenient in every zone they may be in, and a zone nobody gave is recorded as unknown, never guessed."""

from __future__ import annotations

import datetime as dt

import pytest

from core.imports.resource import run_import
from core.models import AuditEvent
from loans import resources
from loans.models import Customer
from notifications.dispatch import dispatch_due
from notifications.models import JurisdictionPolicy, NotificationLog
from notifications.notices import plan_notice
from notifications.planning import plan_contacts

from .factories import make_customer, make_tier
from .factories_reminders import LOS_ANGELES, SHANGHAI, local, logs_of, make_debtor, make_rule, make_template

pytestmark = pytest.mark.django_db

Status = NotificationLog.Status
DUE = dt.date(2026, 12, 1)
HEADER = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason"
)


def notice_at(customer, installments, moment):
    make_template("pre_due", "sms", "zh-hans")
    [log] = plan_notice(
        customer=customer,
        kind="pre_due",
        installments=installments,
        now=moment,
        dedupe_key=f"notice:{customer.pk}",
        channels=["sms"],
    )
    return log


@pytest.mark.parametrize(
    "stored, phone, moment, opening",
    [
        # +1 415 stored as Shanghai, texted at 22:05 in Los Angeles (14:05 in Shanghai).
        (SHANGHAI, "+14155550123", local(LOS_ANGELES, 2026, 11, 28, 22, 5), local(SHANGHAI, 2026, 11, 30, 8)),
        # +86 stored as Los Angeles, texted at 01:05 in Shanghai (09:05 the day before in Los Angeles).
        (
            LOS_ANGELES,
            "+8613800138000",
            local(SHANGHAI, 2026, 11, 29, 1, 5),
            local(SHANGHAI, 2026, 11, 29, 8),
        ),
    ],
)
def test_a_phone_in_another_zone_than_the_stored_one_is_contacted_only_when_both_are_open(
    stored, phone, moment, opening
):
    customer, installments = make_debtor(make_tier(), due_date=DUE, timezone=stored, phone=phone)
    log = notice_at(customer, installments, moment)

    dispatch_due(moment)

    log.refresh_from_db()
    assert (log.status, log.reason, log.scheduled_for) == (Status.DEFERRED, "outside_contact_window", opening)
    event = AuditEvent.objects.get(action="notifications.contact.deferred", object_id=str(log.pk))
    assert event.after["zones"] == sorted([SHANGHAI, LOS_ANGELES])
    assert event.after["zone_sources"]["stored"] == stored
    assert event.after["zone_sources"]["phone"] == [LOS_ANGELES if stored == SHANGHAI else SHANGHAI]
    assert event.after["jurisdictions"] == ["CN", "US"]

    dispatch_due(opening)
    log.refresh_from_db()
    assert log.status == Status.SENT


def test_the_planner_plans_a_rule_when_every_zone_is_open_and_the_dispatcher_agrees():
    tier = make_tier()
    make_rule(tier, -3, "sms", send_time=dt.time(18, 0))  # 18:00 in Shanghai is 02:00 in Los Angeles
    make_template("pre_due", "sms", "zh-hans")
    customer, _ = make_debtor(tier, due_date=DUE, timezone=SHANGHAI, phone="+14155550123")

    plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))

    [log] = logs_of(customer)
    assert log.scheduled_for == local(SHANGHAI, 2026, 11, 29, 8, 0)  # 16:00 the day before in Los Angeles
    dispatch_due(log.scheduled_for)
    log.refresh_from_db()
    assert log.status == Status.SENT


def test_a_customer_imported_without_a_time_zone_is_recorded_as_unknown_not_guessed():
    run_import(
        resources.CustomerResource(),
        "\n".join(
            [
                HEADER,
                "NZ1,Amy Lee,+1 415 555 2671,amy@example.com,,en,,,0,0,0,0,0,",
                "NZ2,无号码,,nz2@example.com,,zh-hans,,,0,0,0,0,0,",
                "NZ3,Bob,+1 415 555 2672,bob@example.com,,en,Asia/Shanghai,,0,0,0,0,0,",
            ]
        )
        + "\n",
    )
    amy, nobody, bob = (Customer.objects.get(ref=r) for r in ("NZ1", "NZ2", "NZ3"))

    assert (amy.timezone_source, amy.timezone) == ("phone", LOS_ANGELES)
    assert amy.location.zones == (LOS_ANGELES,) and amy.location.audit()["zone_sources"]["stored"] is None
    assert nobody.timezone_source == "unknown" and nobody.location.is_assumed
    assert nobody.location.audit()["zone_sources"]["assumed"] == SHANGHAI  # the operators' TIME_ZONE, said so
    assert (bob.timezone_source, bob.location.zones) == ("given", (LOS_ANGELES, SHANGHAI))
    # An export leaves the zone nobody gave empty, so a re-import keeps it unknown.
    rows = resources.CustomerResource().export(Customer.objects.order_by("ref")).dict
    assert [r["timezone"] for r in rows] == ["", "", "Asia/Shanghai"]


def test_a_customer_saved_without_a_zone_follows_the_phone_and_a_given_zone_is_kept():
    derived = make_customer(timezone="", phone="+14155550123")
    assert (derived.timezone, derived.timezone_source) == (LOS_ANGELES, "phone")
    derived.phone = "+8613800138000"
    derived.save()
    assert (derived.timezone, derived.timezone_source) == (SHANGHAI, "phone")
    given = make_customer(timezone=LOS_ANGELES, phone="+8613800138001")
    assert (given.timezone, given.timezone_source) == (LOS_ANGELES, "given")


def test_the_jurisdictions_rules_are_there_after_migrating():
    rules = {j.country: j for j in JurisdictionPolicy.objects.all()}
    assert set(rules) >= {"US", "CN"}
    for country in ("US", "CN"):
        j = rules[country]
        assert (j.window_start, j.window_end) == (dt.time(8), dt.time(21))
        assert (j.max_calls_per_debt_in_7_days, j.call_pause_days_after_conversation) == (7, 7)
        assert j.max_call_attempts_per_day == 3
