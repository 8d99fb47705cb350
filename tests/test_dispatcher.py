from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from core.models import AuditEvent
from loans import signals as loan_signals
from loans.models import Customer, Installment
from notifications.cancelling import cancel_pending
from notifications.channels import OutboxBackend
from notifications.dispatch import claim_due, dispatch_due
from notifications.models import NotificationLog, OutboxMessage
from notifications.notices import plan_notice
from notifications.planning import plan_contacts
from notifications.sending import OutgoingMessage, ProviderError, SendResult

from .factories import make_tier
from .factories_reminders import (
    LOS_ANGELES,
    SHANGHAI,
    local,
    logs_of,
    make_debtor,
    make_rule,
    make_template,
    set_policy,
)

pytestmark = pytest.mark.django_db

Status = NotificationLog.Status
Reason = NotificationLog.Reason
DUE = dt.date(2026, 12, 1)
# The -3 day of DUE in Shanghai, at the rule's send time and a little after.
PLAN_AT = local(SHANGHAI, 2026, 11, 28, 0, 30)
SEND_AT = local(SHANGHAI, 2026, 11, 28, 10, 5)


class FailingBackend:
    """A provider that is down: every send fails with a retryable error."""

    calls: list[str] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        FailingBackend.calls.append(message.idempotency_key)
        raise ProviderError("gateway answered 503", retryable=True, status_code=503)


class RejectingBackend:
    def send(self, message: OutgoingMessage) -> SendResult:
        raise ProviderError("invalid number", retryable=False, status_code=400)


def pre_due_setup(*, loans=1, channels=("sms",), tier=None, templates=True, **customer_kwargs):
    tier = tier or make_tier()
    for channel in channels:
        make_rule(tier, -3, channel)
    if templates:
        for channel in ("sms", "push", "email"):
            make_template("pre_due", channel, "zh-hans")
    customer, installments = make_debtor(tier, loans=loans, due_date=DUE, **customer_kwargs)
    plan_contacts(PLAN_AT)
    return customer, installments


def statuses(customer):
    return [(log.channel, log.status, log.reason) for log in logs_of(customer)]


def test_it_sends_a_due_reminder_through_the_outbox_with_the_rendered_message():
    customer, [inst] = pre_due_setup(name="王芳")

    result = dispatch_due(SEND_AT)

    [log] = logs_of(customer)
    assert (log.status, log.reason, log.sent_at, log.attempts) == (Status.SENT, "", SEND_AT, 1)
    message = OutboxMessage.objects.get()
    assert message.provider_message_id == log.provider_message_id
    assert message.idempotency_key == log.idempotency_key
    assert message.destination == customer.phone == log.destination
    assert message.body == log.body
    assert message.body.startswith("王芳: 500.00 CNY due 2026-12-01.")
    assert inst.loan.ref in message.body
    assert result["sent"] == 1


def test_it_does_not_send_before_the_scheduled_time():
    customer, _ = pre_due_setup()

    dispatch_due(SEND_AT - dt.timedelta(minutes=10))

    assert statuses(customer) == [("sms", Status.PLANNED, "")]
    assert OutboxMessage.objects.count() == 0


def test_two_loans_due_the_same_day_go_out_as_one_message_listing_both():
    customer, installments = pre_due_setup(loans=2)

    dispatch_due(SEND_AT)

    message = OutboxMessage.objects.get()
    for inst in installments:
        assert inst.loan.ref in message.body
    assert "1000.00 CNY" in message.body


def test_a_frequency_cap_never_drops_the_second_loan():
    customer, installments = pre_due_setup(loans=2, tier=make_tier(max_contacts_per_week=1))

    dispatch_due(SEND_AT)

    assert statuses(customer) == [("sms", Status.SENT, "")]
    body = OutboxMessage.objects.get().body
    assert all(inst.loan.ref in body for inst in installments)


def test_it_cancels_when_every_instalment_is_paid_before_sending():
    customer, [inst] = pre_due_setup()
    Installment.objects.filter(id=inst.id).update(
        paid_at=SEND_AT - dt.timedelta(hours=1), amount_paid=inst.amount_due
    )

    dispatch_due(SEND_AT)

    assert statuses(customer) == [("sms", Status.CANCELLED, Reason.PAID)]
    assert OutboxMessage.objects.count() == 0


def test_it_sends_only_for_the_loans_still_unpaid():
    customer, [paid, unpaid] = pre_due_setup(loans=2)
    Installment.objects.filter(id=paid.id).update(
        paid_at=SEND_AT - dt.timedelta(hours=1), amount_paid=paid.amount_due
    )

    dispatch_due(SEND_AT)

    [log] = logs_of(customer)
    assert log.status == Status.SENT and log.loan_refs == unpaid.loan.ref
    body = OutboxMessage.objects.get().body
    assert unpaid.loan.ref in body and paid.loan.ref not in body


def test_it_suppresses_customers_who_must_not_be_contacted():
    customer, _ = pre_due_setup()
    Customer.objects.filter(id=customer.id).update(do_not_contact=True, do_not_contact_reason="dispute")

    dispatch_due(SEND_AT)

    assert statuses(customer) == [("sms", Status.SUPPRESSED, Reason.DO_NOT_CONTACT)]
    event = AuditEvent.objects.get(action="notifications.contact.suppressed")
    assert event.after["reason"] == "do_not_contact" and event.after["do_not_contact_reason"] == "dispute"


def test_an_opted_out_channel_falls_back_to_the_next_channel_of_the_tier():
    customer, _ = pre_due_setup(opt_out_sms=True, tier=make_tier(channel_order="sms,push,email"))

    dispatch_due(SEND_AT)

    [log] = logs_of(customer)
    assert (log.channel, log.status, log.destination) == ("push", Status.SENT, customer.push_token)
    assert OutboxMessage.objects.get().channel == "push"
    event = AuditEvent.objects.get(action="notifications.contact.sent")
    assert event.after["opted_out_of"] == "sms"


def test_the_fallback_skips_a_channel_the_contact_already_uses():
    customer, _ = pre_due_setup(
        channels=("sms", "push"), opt_out_sms=True, tier=make_tier(channel_order="sms,push,email")
    )

    dispatch_due(SEND_AT)

    assert sorted(OutboxMessage.objects.values_list("channel", flat=True)) == ["email", "push"]
    assert {log.channel for log in logs_of(customer)} == {"email", "push"}


def test_it_suppresses_when_every_channel_is_opted_out():
    customer, _ = pre_due_setup(opt_out_sms=True, opt_out_push=True, tier=make_tier(channel_order="sms,push"))

    dispatch_due(SEND_AT)

    assert statuses(customer) == [("sms", Status.SUPPRESSED, Reason.OPTED_OUT)]


def test_it_suppresses_a_contact_without_a_destination():
    customer, _ = pre_due_setup(phone="")

    dispatch_due(SEND_AT)

    assert statuses(customer) == [("sms", Status.SUPPRESSED, Reason.NO_DESTINATION)]


def test_a_send_time_outside_the_window_is_planned_at_the_next_opening():
    tier = make_tier()
    make_rule(tier, -3, "sms", send_time=dt.time(22, 0))
    make_template("pre_due", "sms", "zh-hans")
    customer, _ = make_debtor(tier, due_date=DUE)

    plan_contacts(PLAN_AT)

    # Planning and dispatch check the same window: the contact is planned when it may be sent.
    [log] = logs_of(customer)
    assert log.scheduled_for == local(SHANGHAI, 2026, 11, 29, 8, 0)
    dispatch_due(local(SHANGHAI, 2026, 11, 28, 22, 1))
    assert statuses(customer) == [("sms", Status.PLANNED, "")]
    dispatch_due(local(SHANGHAI, 2026, 11, 29, 8, 0))
    assert statuses(customer) == [("sms", Status.SENT, "")]


def test_it_defers_sms_outside_contact_window_to_the_next_opening():
    make_template("pre_due", "sms", "zh-hans")
    customer, installments = make_debtor(make_tier(), due_date=DUE)
    plan_notice(
        customer=customer,
        kind="pre_due",
        installments=installments,
        now=local(SHANGHAI, 2026, 11, 28, 22, 0),
        dedupe_key="late-notice",
        channels=["sms"],
    )

    dispatch_due(local(SHANGHAI, 2026, 11, 28, 22, 1))

    [log] = logs_of(customer)
    assert (log.status, log.reason) == (Status.DEFERRED, Reason.OUTSIDE_CONTACT_WINDOW)
    assert log.scheduled_for == local(SHANGHAI, 2026, 11, 29, 8, 0)
    event = AuditEvent.objects.get(action="notifications.contact.deferred", object_id=str(log.id))
    assert event.after["reason"] == "outside_contact_window" and event.after["window"] == "08:00-21:00"
    assert event.after["local_times"][SHANGHAI].startswith("2026-11-28T22:01")
    assert event.after["zones"] == [SHANGHAI] and event.after["zone_sources"]["stored"] == SHANGHAI

    dispatch_due(local(SHANGHAI, 2026, 11, 29, 7, 59))
    assert logs_of(customer)[0].status == Status.DEFERRED
    dispatch_due(local(SHANGHAI, 2026, 11, 29, 8, 0))
    assert statuses(customer) == [("sms", Status.SENT, "")]


def test_the_window_is_the_customers_local_time_in_los_angeles():
    set_policy(window_start=dt.time(9, 0), window_end=dt.time(20, 0))
    tier = make_tier()
    make_rule(tier, -3, "sms", send_time=dt.time(7, 0))
    make_template("pre_due", "sms", "zh-hans")
    customer, installments = make_debtor(tier, due_date=DUE, timezone=LOS_ANGELES)
    plan_contacts(local(LOS_ANGELES, 2026, 11, 28, 0, 30))
    [planned] = logs_of(customer)
    assert planned.scheduled_for == local(LOS_ANGELES, 2026, 11, 28, 9, 0)  # planned when the window opens
    plan_notice(
        customer=customer,
        kind="pre_due",
        installments=installments,
        now=local(LOS_ANGELES, 2026, 11, 28, 7, 0),
        dedupe_key="early-notice",
        channels=["sms"],
    )

    dispatch_due(local(LOS_ANGELES, 2026, 11, 28, 7, 0))  # 23:00 in Shanghai, 07:00 in Los Angeles

    [log] = [x for x in logs_of(customer) if x.dedupe_key == "early-notice"]
    assert log.status == Status.DEFERRED
    assert log.scheduled_for == local(LOS_ANGELES, 2026, 11, 28, 9, 0)


def test_it_defers_on_a_public_holiday_when_the_policy_says_so():
    import holidays

    set_policy(holiday_country="CN", no_contact_on_holidays=True)
    tier = make_tier()
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customer, installments = make_debtor(tier, due_date=dt.date(2027, 1, 4))
    plan_contacts(local(SHANGHAI, 2027, 1, 1, 0, 30))  # New Year's Day
    [planned] = logs_of(customer)
    assert planned.scheduled_for.astimezone(customer.zone).date() > dt.date(2027, 1, 1)
    planned.delete()
    plan_notice(
        customer=customer,
        kind="pre_due",
        installments=installments,
        now=local(SHANGHAI, 2027, 1, 1, 10, 0),
        dedupe_key="holiday-notice",
        channels=["sms"],
    )

    dispatch_due(local(SHANGHAI, 2027, 1, 1, 10, 5))

    [log] = logs_of(customer)
    assert (log.status, log.reason) == (Status.DEFERRED, Reason.OUTSIDE_CONTACT_WINDOW)
    local_opening = log.scheduled_for.astimezone(customer.zone)
    assert local_opening.time() == dt.time(8, 0)
    assert local_opening.date() > dt.date(2027, 1, 1)
    assert local_opening.date() not in holidays.country_holidays("CN", years=2027)


def test_it_suppresses_beyond_the_tiers_weekly_cap_counting_every_loan_and_channel():
    tier = make_tier(max_contacts_per_week=2)
    customer, _ = pre_due_setup(tier=tier)
    for days_ago, channel in (
        (2, "email"),
        (6, "push"),
        (8, "sms"),
    ):  # the one 8 days ago is out of the window
        NotificationLog.objects.create(
            customer=customer,
            channel=channel,
            kind="pre_due",
            status=Status.DELIVERED if channel == "push" else Status.SENT,
            scheduled_for=SEND_AT - dt.timedelta(days=days_ago),
            sent_at=SEND_AT - dt.timedelta(days=days_ago),
            dedupe_key=f"earlier:{days_ago}",
        )

    dispatch_due(SEND_AT)

    [log] = [log for log in logs_of(customer) if log.status not in (Status.SENT, Status.DELIVERED)]
    assert (log.status, log.reason) == (Status.SUPPRESSED, Reason.FREQUENCY_CAP)
    event = AuditEvent.objects.get(action="notifications.contact.suppressed")
    assert (event.after["sent_in_last_7_days"], event.after["max_contacts_per_week"]) == (2, 2)


def test_the_cap_applies_between_contacts_of_the_same_batch():
    customer, _ = pre_due_setup(channels=("sms", "push"), tier=make_tier(max_contacts_per_week=1))

    dispatch_due(SEND_AT)

    assert sorted(log.status for log in logs_of(customer)) == [Status.SENT, Status.SUPPRESSED]
    assert OutboxMessage.objects.count() == 1


def test_the_cap_counts_a_contact_another_worker_is_sending_first():
    customer, _ = pre_due_setup(channels=("sms", "push"), tier=make_tier(max_contacts_per_week=1))
    # Another worker claimed the customer's first contact (the SMS) and is still sending it.
    [sms_id] = claim_due(SEND_AT, 1)
    assert NotificationLog.objects.get(id=sms_id).channel == "sms"

    dispatch_due(SEND_AT)  # this worker gets the push

    assert statuses(customer) == [
        ("push", Status.SUPPRESSED, Reason.FREQUENCY_CAP),
        ("sms", Status.PLANNED, ""),
    ]
    event = AuditEvent.objects.get(action="notifications.contact.suppressed")
    assert (event.after["sent_in_last_7_days"], event.after["sending_elsewhere"]) == (0, 1)
    # The other worker died; once its claim lapses the SMS goes out: one contact in all.
    dispatch_due(SEND_AT + dt.timedelta(hours=1))
    assert statuses(customer) == [("push", Status.SUPPRESSED, Reason.FREQUENCY_CAP), ("sms", Status.SENT, "")]
    assert OutboxMessage.objects.count() == 1


def test_a_contact_claimed_elsewhere_later_in_the_order_does_not_hold_back_the_first():
    customer, _ = pre_due_setup(channels=("sms", "push"), tier=make_tier(max_contacts_per_week=1))
    push = NotificationLog.objects.get(customer=customer, channel="push")
    NotificationLog.objects.filter(id=push.id).update(claimed_until=SEND_AT + dt.timedelta(minutes=10))

    dispatch_due(SEND_AT)

    assert statuses(customer) == [("push", Status.PLANNED, ""), ("sms", Status.SENT, "")]
    dispatch_due(SEND_AT + dt.timedelta(minutes=11))  # the push, once its worker's claim lapsed, sees the SMS
    assert statuses(customer) == [("push", Status.SUPPRESSED, Reason.FREQUENCY_CAP), ("sms", Status.SENT, "")]


def test_a_customer_without_a_template_in_their_language_gets_the_default_language():
    customer, _ = pre_due_setup(language="en")  # only zh-hans templates exist

    dispatch_due(SEND_AT)

    [log] = logs_of(customer)
    assert (log.status, log.language) == (Status.SENT, "zh-hans")


def test_the_customers_own_language_wins_when_it_has_a_template():
    make_template(
        "pre_due", "sms", "en", body="Dear {customer_name}, {amount_due} {currency} is due on {due_date}."
    )
    customer, _ = pre_due_setup(language="en", name="Alice Smith")

    dispatch_due(SEND_AT)

    [log] = logs_of(customer)
    assert log.language == "en"
    # The opt-out line of the customer's language follows the template's text (Regulation F 1006.6(e)).
    assert OutboxMessage.objects.get().body == (
        "Dear Alice Smith, 500.00 CNY is due on 2026-12-01.\nReply STOP to opt out"
    )


def test_without_any_template_the_contact_is_held_back_with_no_template():
    make_template("pre_due", "sms", "en")  # neither the customer's language nor the default (zh-hans)
    customer, _ = pre_due_setup(templates=False)

    dispatch_due(SEND_AT)

    assert statuses(customer) == [("sms", Status.SUPPRESSED, Reason.NO_TEMPLATE)]


def test_a_contact_not_sent_in_time_expires():
    set_policy(expire_after_hours=12)
    customer, _ = pre_due_setup()

    dispatch_due(SEND_AT + dt.timedelta(hours=13))

    assert statuses(customer) == [("sms", Status.CANCELLED, Reason.EXPIRED)]
    assert OutboxMessage.objects.count() == 0


@override_settings(NOTIFICATION_BACKENDS={"sms": "tests.test_dispatcher.FailingBackend"})
def test_a_provider_error_is_retried_with_backoff_then_fails():
    set_policy(max_send_attempts=3, retry_backoff_seconds=300)
    FailingBackend.calls = []
    customer, _ = pre_due_setup(tier=make_tier(channel_order="sms"))  # nothing to fall back to

    dispatch_due(SEND_AT)
    [log] = logs_of(customer)
    assert (log.status, log.reason, log.attempts) == (Status.DEFERRED, Reason.PROVIDER_ERROR, 1)
    assert log.scheduled_for == SEND_AT + dt.timedelta(seconds=300)
    assert "503" in log.last_error

    dispatch_due(SEND_AT + dt.timedelta(seconds=299))
    assert logs_of(customer)[0].attempts == 1

    second = SEND_AT + dt.timedelta(seconds=300)
    dispatch_due(second)
    [log] = logs_of(customer)
    assert (log.status, log.attempts, log.scheduled_for) == (
        Status.DEFERRED,
        2,
        second + dt.timedelta(seconds=600),
    )

    dispatch_due(second + dt.timedelta(seconds=600))
    [log] = logs_of(customer)
    assert (log.status, log.reason, log.attempts) == (Status.FAILED, Reason.PROVIDER_ERROR, 3)
    assert len(FailingBackend.calls) == 3 and len(set(FailingBackend.calls)) == 1  # the same idempotency key

    dispatch_due(second + dt.timedelta(days=1))
    assert len(FailingBackend.calls) == 3
    assert (
        AuditEvent.objects.filter(
            action="notifications.contact.failed", after__reason="provider_error"
        ).count()
        == 1
    )
    retries = AuditEvent.objects.filter(
        action="notifications.contact.deferred", after__reason="provider_error"
    )
    assert sorted((e.after["attempt"], e.after["retry_at"]) for e in retries) == [
        (1, (SEND_AT + dt.timedelta(seconds=300)).isoformat().replace("+00:00", "Z")),
        (2, (second + dt.timedelta(seconds=600)).isoformat().replace("+00:00", "Z")),
    ]


@override_settings(NOTIFICATION_BACKENDS={"sms": "tests.test_dispatcher.RejectingBackend"})
def test_an_error_that_retrying_cannot_fix_fails_at_once():
    customer, _ = pre_due_setup(tier=make_tier(channel_order="sms"))  # nothing to fall back to

    dispatch_due(SEND_AT)

    [log] = logs_of(customer)
    assert (log.status, log.reason, log.attempts) == (Status.FAILED, Reason.PROVIDER_ERROR, 1)


def test_a_crash_after_sending_a_batch_and_before_recording_it_sends_nothing_twice(monkeypatch):
    from notifications import dispatch

    tier = make_tier(max_contacts_per_week=5)
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customers = [make_debtor(tier, due_date=DUE)[0] for _ in range(6)]
    plan_contacts(PLAN_AT)

    def die(*args, **kwargs):
        raise SystemExit("killed after sending, before recording")

    # The worker dies when the provider took the whole batch and nothing of it was recorded yet.
    monkeypatch.setattr(dispatch, "append_events", die)
    with pytest.raises(SystemExit):
        dispatch_due(SEND_AT)
    monkeypatch.undo()
    first = dict(OutboxMessage.objects.values_list("idempotency_key", "provider_message_id"))
    assert len(first) == 6
    assert NotificationLog.objects.filter(status=Status.SENT).count() == 0
    assert dispatch_due(SEND_AT + dt.timedelta(minutes=5)) == {}  # still claimed by the dead worker

    result = dispatch_due(SEND_AT + dt.timedelta(minutes=11))  # its lease lapsed: another run takes the rows

    assert result["sent"] == 6
    assert OutboxMessage.objects.count() == 6  # the outbox answered the re-send with the first messages
    for customer in customers:
        [log] = logs_of(customer)
        assert log.status == Status.SENT and log.provider_message_id == first[log.idempotency_key]
    assert AuditEvent.objects.filter(action="notifications.contact.sent").count() == 6


def test_a_crash_between_sending_and_recording_does_not_send_twice():
    customer, _ = pre_due_setup()
    [log] = logs_of(customer)
    # The provider took the message, then the worker died before recording it: the row is still planned.
    first = OutboxBackend().send(OutgoingMessage("sms", customer.phone, "", "text", str(log.idempotency_key)))

    dispatch_due(SEND_AT)

    [log] = logs_of(customer)
    assert log.status == Status.SENT and log.provider_message_id == first.provider_message_id
    assert OutboxMessage.objects.count() == 1


def test_a_claimed_row_is_not_taken_again_until_its_lease_lapses():
    pre_due_setup()

    first = claim_due(SEND_AT, 10)

    assert len(first) == 1
    assert claim_due(SEND_AT, 10) == []
    assert claim_due(SEND_AT + dt.timedelta(minutes=11), 10) == first


def test_it_works_through_the_due_rows_in_batches():
    tier = make_tier()
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    for _ in range(5):
        make_debtor(tier, due_date=DUE)
    plan_contacts(PLAN_AT)

    result = dispatch_due(SEND_AT, batch_size=2)

    assert result["claimed"] == 5 and result["sent"] == 5
    assert OutboxMessage.objects.count() == 5


def test_dispatching_twice_sends_nothing_more():
    pre_due_setup(loans=2)

    dispatch_due(SEND_AT)
    second = dispatch_due(SEND_AT)

    assert OutboxMessage.objects.count() == 1
    assert second == {}


def test_every_decision_is_written_to_the_audit_trail():
    sent, _ = pre_due_setup()
    blocked, _ = make_debtor(NotificationLog.objects.get().tier, due_date=DUE, phone="")
    plan_contacts(PLAN_AT)

    dispatch_due(SEND_AT)

    by_action = {e.action: e for e in AuditEvent.objects.filter(action__startswith="notifications.contact.")}
    assert set(by_action) == {
        "notifications.contact.planned",
        "notifications.contact.sent",
        "notifications.contact.suppressed",
    }
    assert by_action["notifications.contact.sent"].after["customer_id"] == sent.id
    assert by_action["notifications.contact.suppressed"].after == {
        "status": "suppressed",
        "reason": "no_destination",
        "customer_id": blocked.id,
        "channel": "sms",
        "kind": "pre_due",
    }
    assert by_action["notifications.contact.suppressed"].before == {"status": "planned"}


def test_a_payment_cancels_what_is_pending_for_that_instalment():
    customer, [paid, unpaid] = pre_due_setup(loans=2)
    other, [alone] = make_debtor(NotificationLog.objects.get().tier, due_date=DUE)
    plan_contacts(PLAN_AT)
    at = SEND_AT - dt.timedelta(hours=2)
    Installment.objects.filter(id__in=[paid.id, alone.id]).update(paid_at=at)

    loan_signals.installments_paid.send(sender=Installment, installment_ids=[paid.id, alone.id], at=at)

    assert statuses(customer) == [("sms", Status.PLANNED, "")]  # the other loan still needs its reminder
    assert statuses(other) == [("sms", Status.CANCELLED, Reason.PAID)]
    assert (
        AuditEvent.objects.filter(action="notifications.contact.cancelled", after__reason="paid").count() == 1
    )


def test_a_tier_change_replans_pending_contacts_under_the_new_tier():
    old, new = make_tier(), make_tier()
    make_rule(new, -3, "push")
    customer, _ = pre_due_setup(tier=old)
    Customer.objects.filter(id=customer.id).update(tier=new, credit_score=new.min_score)

    loan_signals.tier_changed.send(
        sender=Customer, changes=[(customer.id, old.id, new.id)], at=PLAN_AT + dt.timedelta(hours=1)
    )

    assert statuses(customer) == [
        ("push", Status.PLANNED, ""),
        ("sms", Status.CANCELLED, Reason.TIER_CHANGED),
    ]
    dispatch_due(SEND_AT)
    assert list(OutboxMessage.objects.values_list("channel", flat=True)) == ["push"]


def test_a_tier_change_back_and_forth_plans_the_contact_again():
    old, new = make_tier(), make_tier()
    customer, _ = pre_due_setup(tier=old)
    at = PLAN_AT + dt.timedelta(hours=1)
    for moved_from, moved_to in ((old, new), (new, old)):
        Customer.objects.filter(id=customer.id).update(tier=moved_to)
        loan_signals.tier_changed.send(
            sender=Customer, changes=[(customer.id, moved_from.id, moved_to.id)], at=at
        )

    assert sorted(statuses(customer)) == [
        ("sms", Status.CANCELLED, Reason.TIER_CHANGED),
        ("sms", Status.PLANNED, ""),
    ]


def test_cancel_pending_by_customer_and_kind_returns_the_count():
    customer, _ = pre_due_setup(channels=("sms", "push"))

    count = cancel_pending(
        reason=Reason.TIER_CHANGED, actor="test", at=SEND_AT, customer_ids=[customer.id], kinds=["due_today"]
    )
    assert count == 0
    count = cancel_pending(
        reason=Reason.TIER_CHANGED, actor="test", at=SEND_AT, customer_ids=[customer.id], kinds=["pre_due"]
    )
    assert count == 2


def test_an_event_notice_goes_through_the_same_gates_and_is_planned_once():
    tier = make_tier(channel_order="push,sms")
    make_template(
        "autodebit_failed",
        "push",
        "zh-hans",
        body="{customer_name}: auto-debit of {amount_due} failed ({loan_ref}).",
    )
    customer, [inst] = make_debtor(tier, due_date=DUE)
    now = local(SHANGHAI, 2026, 12, 1, 9, 0)

    first = plan_notice(
        customer=customer,
        kind="autodebit_failed",
        installments=[inst],
        now=now,
        dedupe_key=f"adf:{inst.id}:2026-12-01",
    )
    again = plan_notice(
        customer=customer,
        kind="autodebit_failed",
        installments=[inst],
        now=now,
        dedupe_key=f"adf:{inst.id}:2026-12-01",
    )

    assert [log.id for log in first] == [log.id for log in again]
    [log] = first
    assert (log.channel, log.kind, log.scheduled_for, log.dedupe_key) == (
        "push",
        "autodebit_failed",
        now,
        f"adf:{inst.id}:2026-12-01",
    )
    assert list(log.installments.all()) == [inst]

    dispatch_due(now)
    assert (
        OutboxMessage.objects.get().body == f"{customer.name}: auto-debit of 500.00 failed ({inst.loan.ref})."
    )


@pytest.mark.parametrize("size", [10, 60])
def test_decisions_that_send_nothing_take_the_same_number_of_queries_for_any_batch(
    size, django_assert_max_num_queries
):
    tier = make_tier()
    make_rule(tier, -3, "sms")
    for _ in range(size):
        make_debtor(tier, due_date=DUE, do_not_contact=True, do_not_contact_reason="dispute")
    plan_contacts(PLAN_AT)

    # Constant in the batch size: policy, templates, claim, the batch with its items, the weekly counts and what
    # other workers are sending, the legal holds, the channels used, one bulk update and the audit chain.
    with django_assert_max_num_queries(23):
        result = dispatch_due(SEND_AT)

    assert result["suppressed:do_not_contact"] == size


@pytest.mark.parametrize("size", [10, 60])
def test_sending_a_batch_takes_the_same_number_of_queries_for_any_batch(size, django_assert_max_num_queries):
    tier = make_tier(max_contacts_per_week=5)
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    for _ in range(size):
        make_debtor(tier, due_date=DUE)
    plan_contacts(PLAN_AT)

    # Constant in the batch size: the decisions' reads as above, the outbox's three queries (known keys, one
    # insert, the ids read back), then one transaction: the common fields, the rows' own fields, the audit chain.
    with django_assert_max_num_queries(27):
        result = dispatch_due(SEND_AT)

    assert result["sent"] == size
    assert OutboxMessage.objects.count() == size
