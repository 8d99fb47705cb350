"""Auto-debit on the due date through the payment gateway (the simulator by default)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backoffice.jobs import PIPELINE
from core.models import AuditEvent
from loans.autodebit import PENDING, run_autodebit
from loans.gateways import DebitResult, SimulatorGateway, parse_failures, simulate_failure
from loans.models import AutoDebitAttempt, Installment, Loan, Payment

from .factories import make_customer, make_installment, make_loan

pytestmark = pytest.mark.django_db

DUE = dt.date(2026, 12, 1)
# 09:00 on the due date in Shanghai; still 17:00 the day before in Los Angeles.
NOW = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.timezone.utc)


def autopay_installment(*, timezone="Asia/Shanghai", amount="500.00", due=DUE, **loan_kwargs):
    loan_kwargs.setdefault("autopay", True)
    loan = make_loan(make_customer(timezone=timezone), **loan_kwargs)
    return make_installment(loan, due_date=due, amount_due=Decimal(amount))


class FlakyGateway:
    """A gateway that drops the connection on its first call, then behaves like the simulator."""

    calls: list[str] = []

    def debit(self, *, loan, installment, amount, idempotency_key):
        FlakyGateway.calls.append(idempotency_key)
        if len(FlakyGateway.calls) == 1:
            raise ConnectionError("gateway connection reset")
        return SimulatorGateway().debit(
            loan=loan, installment=installment, amount=amount, idempotency_key=idempotency_key
        )


def test_the_pipeline_runs_this_step():
    assert ("autodebit", "loans.autodebit.run_autodebit") in PIPELINE


def test_a_successful_debit_records_an_autodebit_payment_and_the_instalment_is_paid(settings):
    settings.PAYMENT_SIMULATOR_FAILURES = ""
    inst = autopay_installment(amount="500.00")

    counts = run_autodebit(NOW)

    assert counts == {"claimed": 1, "succeeded": 1, "failed": 0, "unconfirmed": 0}
    attempt = AutoDebitAttempt.objects.get(installment=inst)
    assert (attempt.status, attempt.attempted_on, attempt.amount) == ("succeeded", DUE, Decimal("500.00"))
    assert attempt.gateway_reference.startswith("sim-")
    payment = Payment.objects.get(allocations__installment=inst)
    assert (payment.source, payment.amount, payment.received_at) == ("autodebit", Decimal("500.00"), NOW)
    assert attempt.payment == payment
    inst.refresh_from_db()
    assert inst.paid_at == NOW and inst.amount_paid == Decimal("500.00")
    assert inst.loan.__class__.objects.get(pk=inst.loan_id).status == Loan.Status.PAID_OFF
    event = AuditEvent.objects.get(action="loans.autodebit.succeeded")
    assert event.after["loan"] == inst.loan.ref
    assert event.after["payment_ref"] == payment.ref
    assert event.after["amount"] == "500.00"
    allocated = AuditEvent.objects.get(action="loans.payment.allocated", after__ref=payment.ref)
    assert allocated.after["allocations"] == [
        {
            "id": inst.pk,
            "seq": inst.seq,
            "amount": "500.00",
            "paid_at": NOW.isoformat().replace("+00:00", "Z"),
        }
    ]


def test_a_successful_debit_cancels_what_is_still_pending_for_the_instalment(
    django_capture_on_commit_callbacks,
):
    from notifications.models import NotificationItem, NotificationLog

    inst = autopay_installment()
    reminder = NotificationLog.objects.create(
        customer=inst.loan.customer,
        channel="sms",
        kind="due_today",
        due_date=DUE,
        scheduled_for=NOW + dt.timedelta(hours=1),
        dedupe_key="test:due-today",
    )
    NotificationItem.objects.create(notification=reminder, installment=inst)

    with django_capture_on_commit_callbacks(execute=True):
        run_autodebit(NOW)

    reminder.refresh_from_db()
    assert (reminder.status, reminder.reason) == ("cancelled", "paid")


def test_only_what_is_outstanding_is_debited():
    inst = autopay_installment(amount="500.00")
    Payment.objects.create(
        ref="APP-1",
        loan=inst.loan,
        installment=inst,
        amount=Decimal("200.00"),
        received_at=NOW - dt.timedelta(days=2),
    )
    Installment.objects.filter(pk=inst.pk).update(amount_paid=Decimal("200.00"))

    run_autodebit(NOW)

    assert Payment.objects.get(source="autodebit").amount == Decimal("300.00")
    inst.refresh_from_db()
    assert inst.is_paid and inst.amount_paid == Decimal("500.00")


def test_it_debits_on_the_due_date_of_the_customers_own_time_zone():
    shanghai = autopay_installment(timezone="Asia/Shanghai")
    los_angeles = autopay_installment(timezone="America/Los_Angeles")

    run_autodebit(NOW)  # 09:00 1 Dec in Shanghai, 17:00 30 Nov in Los Angeles
    assert list(AutoDebitAttempt.objects.values_list("installment_id", flat=True)) == [shanghai.pk]

    run_autodebit(dt.datetime(2026, 12, 1, 17, 0, tzinfo=dt.timezone.utc))  # 09:00 1 Dec in Los Angeles
    attempt = AutoDebitAttempt.objects.get(installment=los_angeles)
    assert (attempt.status, attempt.attempted_on) == ("succeeded", DUE)


def test_loans_without_a_mandate_paid_instalments_and_other_days_are_left_alone():
    autopay_installment(autopay=False)
    autopay_installment(due=DUE + dt.timedelta(days=1))
    autopay_installment(due=DUE - dt.timedelta(days=1))  # missed yesterday: never back-filled
    autopay_installment(status=Loan.Status.WRITTEN_OFF)
    paid = autopay_installment()
    Installment.objects.filter(pk=paid.pk).update(
        amount_paid=paid.amount_due, paid_at=NOW - dt.timedelta(days=1)
    )

    counts = run_autodebit(NOW)

    assert counts["claimed"] == 0
    assert not AutoDebitAttempt.objects.exists()
    assert not Payment.objects.exists()


def test_running_again_the_same_day_debits_nothing_twice():
    inst = autopay_installment()

    run_autodebit(NOW)
    again = run_autodebit(NOW + dt.timedelta(hours=3))

    assert again == {"claimed": 0, "succeeded": 0, "failed": 0, "unconfirmed": 0}
    assert AutoDebitAttempt.objects.filter(installment=inst).count() == 1
    assert Payment.objects.filter(allocations__installment=inst).count() == 1
    assert AuditEvent.objects.filter(action="loans.autodebit.succeeded").count() == 1


def test_a_gateway_that_did_not_answer_is_asked_again_with_the_same_key_and_debits_once(settings):
    settings.PAYMENT_GATEWAY_BACKEND = "tests.test_autodebit.FlakyGateway"
    FlakyGateway.calls = []
    inst = autopay_installment()

    first = run_autodebit(NOW)
    assert first["unconfirmed"] == 1
    assert AutoDebitAttempt.objects.get(installment=inst).status == PENDING
    assert not Payment.objects.exists()

    second = run_autodebit(NOW + dt.timedelta(minutes=30))

    assert second == {"claimed": 0, "succeeded": 1, "failed": 0, "unconfirmed": 0}
    assert FlakyGateway.calls[0] == FlakyGateway.calls[1]
    assert AutoDebitAttempt.objects.get(installment=inst).status == "succeeded"
    assert Payment.objects.filter(allocations__installment=inst).count() == 1


def test_the_query_count_does_not_grow_with_the_number_of_loans():
    def queries_for(n: int, day: dt.date) -> int:
        for _ in range(n):
            autopay_installment(due=day)
        now = dt.datetime.combine(day, dt.time(1, 0), tzinfo=dt.timezone.utc)
        with CaptureQueriesContext(connection) as ctx:
            counts = run_autodebit(now)
        assert counts["succeeded"] == n
        return len(ctx.captured_queries)

    assert queries_for(2, DUE) == queries_for(8, DUE + dt.timedelta(days=1))


def test_declines_take_the_same_number_of_queries_for_any_number_of_loans():
    def queries_for(n: int, day: dt.date) -> int:
        for _ in range(n):
            autopay_installment(due=day)
        now = dt.datetime.combine(day, dt.time(1, 0), tzinfo=dt.timezone.utc)
        with simulate_failure("insufficient_funds"), CaptureQueriesContext(connection) as ctx:
            counts = run_autodebit(now)
        assert counts["failed"] == n
        return len(ctx.captured_queries)

    assert queries_for(2, DUE) == queries_for(8, DUE + dt.timedelta(days=1))


# --- declines ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["insufficient_funds", "card_expired"])
def test_a_declined_debit_records_its_reason_and_plans_an_autodebit_failed_notice(reason):
    from notifications.models import NotificationLog

    inst = autopay_installment()

    with simulate_failure(reason):
        counts = run_autodebit(NOW)

    assert counts == {"claimed": 1, "succeeded": 0, "failed": 1, "unconfirmed": 0}
    attempt = AutoDebitAttempt.objects.get(installment=inst)
    assert (attempt.status, attempt.failure_reason, attempt.payment) == ("failed", reason, None)
    assert not Payment.objects.exists()
    inst.refresh_from_db()
    assert not inst.is_paid
    event = AuditEvent.objects.get(action="loans.autodebit.failed")
    assert event.after["reason"] == reason and event.after["loan"] == inst.loan.ref
    notice = NotificationLog.objects.get(dedupe_key__startswith="autodebit:", customer=inst.loan.customer)
    assert notice.kind == "autodebit_failed"
    assert notice.customer_id == inst.loan.customer_id
    assert list(notice.installments.all()) == [inst]


def test_a_failure_configured_in_settings_declines_and_a_rerun_neither_retries_nor_notices_twice(settings):
    from notifications.models import NotificationLog

    settings.PAYMENT_SIMULATOR_FAILURES = "card_expired:1"
    inst = autopay_installment()

    run_autodebit(NOW)
    again = run_autodebit(NOW + dt.timedelta(hours=2))

    assert again == {"claimed": 0, "succeeded": 0, "failed": 0, "unconfirmed": 0}
    attempt = AutoDebitAttempt.objects.get(installment=inst)
    assert attempt.failure_reason == "card_expired"
    assert NotificationLog.objects.filter(kind="autodebit_failed").count() == 1
    assert AuditEvent.objects.filter(action="loans.autodebit.failed").count() == 1


def test_a_decline_whose_notice_cannot_be_planned_is_not_recorded(settings, monkeypatch):
    """The notice is planned in the decline's transaction: if planning fails the decline stays pending (recorded
    with its notice on the next run)."""
    import notifications.receivers
    from notifications.models import NotificationLog

    def broken(*args, **kwargs):
        raise RuntimeError("the notice could not be planned")

    monkeypatch.setattr(notifications.receivers, "plan_notices", broken)
    settings.PAYMENT_SIMULATOR_FAILURES = "insufficient_funds:1"
    inst = autopay_installment()

    with pytest.raises(RuntimeError, match="could not be planned"):
        run_autodebit(NOW)
    assert AutoDebitAttempt.objects.get(installment=inst).status == PENDING
    assert not AuditEvent.objects.filter(action="loans.autodebit.failed").exists()

    monkeypatch.undo()
    settings.PAYMENT_SIMULATOR_FAILURES = "insufficient_funds:1"
    run_autodebit(NOW + dt.timedelta(hours=1))
    assert AutoDebitAttempt.objects.get(installment=inst).status == AutoDebitAttempt.Status.FAILED
    assert NotificationLog.objects.filter(kind="autodebit_failed").count() == 1


def test_the_loan_book_tells_of_a_decline_by_a_signal_once_the_decline_is_written(settings):
    from loans.signals import autodebit_failed

    seen = []

    def receiver(sender, attempts, at, actor, **kwargs):
        stored = AutoDebitAttempt.objects.filter(pk__in=[a.pk for a in attempts]).values_list(
            "status", flat=True
        )
        seen.append(([a.installment_id for a in attempts], at, actor, list(stored)))

    autodebit_failed.connect(receiver, dispatch_uid="test.autodebit_failed")
    try:
        settings.PAYMENT_SIMULATOR_FAILURES = "insufficient_funds:1"
        inst = autopay_installment()
        run_autodebit(NOW)
    finally:
        autodebit_failed.disconnect(dispatch_uid="test.autodebit_failed")

    assert seen == [([inst.pk], NOW, "job:autodebit", [AutoDebitAttempt.Status.FAILED])]


# --- the simulator ----------------------------------------------------------------------------------------


def test_the_simulator_decides_the_same_way_for_the_same_key_and_at_the_configured_rate(settings):
    settings.PAYMENT_SIMULATOR_FAILURES = "insufficient_funds:0.3,card_expired:0.2"
    gateway = SimulatorGateway()

    def debit(key):
        return gateway.debit(loan=None, installment=None, amount=Decimal("1"), idempotency_key=key)

    results = [debit(f"key-{i}") for i in range(1000)]
    assert [debit(f"key-{i}") for i in range(1000)] == results
    reasons = [r.failure_reason for r in results]
    assert 230 < reasons.count("insufficient_funds") < 370
    assert 130 < reasons.count("card_expired") < 270
    assert all(r.succeeded == (r.failure_reason == "") for r in results)


def test_the_simulator_approves_everything_without_configured_failures(settings):
    settings.PAYMENT_SIMULATOR_FAILURES = ""
    result = SimulatorGateway().debit(loan=None, installment=None, amount=Decimal("1"), idempotency_key="k")
    assert result == DebitResult(succeeded=True, reference=result.reference)


def test_a_forced_failure_applies_only_to_the_loans_named():
    named, other = make_loan(ref="L-FORCED"), make_loan(ref="L-OTHER")
    with simulate_failure("card_expired", loan_refs=["L-FORCED"]):
        forced = SimulatorGateway().debit(
            loan=named, installment=None, amount=Decimal("1"), idempotency_key="a"
        )
        free = SimulatorGateway().debit(
            loan=other, installment=None, amount=Decimal("1"), idempotency_key="b"
        )
    after = SimulatorGateway().debit(loan=named, installment=None, amount=Decimal("1"), idempotency_key="a")
    assert (forced.succeeded, forced.failure_reason) == (False, "card_expired")
    assert free.succeeded and after.succeeded


@pytest.mark.parametrize(
    "spec", ["insufficient_funds", "insufficient_funds:x", "card_expired:1.5", "a:0.6,b:0.6", ":0.1"]
)
def test_a_malformed_failure_setting_is_refused(spec):
    with pytest.raises(ImproperlyConfigured):
        parse_failures(spec)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_running_at_once_record_each_debit_once():
    import threading

    from django.db import connections

    installments = [autopay_installment() for _ in range(30)]
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait(timeout=10)
            run_autodebit(NOW)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert Payment.objects.filter(source="autodebit").count() == len(installments)
    assert AutoDebitAttempt.objects.filter(status="succeeded").count() == len(installments)
    assert AuditEvent.objects.filter(action="loans.autodebit.succeeded").count() == len(installments)
    assert not Installment.objects.filter(pk__in=[i.pk for i in installments], paid_at__isnull=True).exists()
