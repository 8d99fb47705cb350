"""bulk_update_rows, update_rows and insert_rows write exactly what they are given, whatever the values, on SQLite and
on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.bulk import bulk_update_rows, insert_rows, update_rows
from loans.models import Customer, Installment, Payment, PaymentAllocation
from notifications.models import NotificationLog

from .factories import make_customer, make_installment, make_loan, make_tier

pytestmark = pytest.mark.django_db

AWKWARD = [
    "quote \" and ' apostrophe",
    "back\\slash {braces}, commas, NULL",
    "line\nbreak\ttab",
    "王小明 😀",
    "",
]


def test_every_kind_of_value_round_trips_and_other_rows_stay_as_they_were():
    customers = [make_customer() for _ in range(len(AWKWARD) + 1)]
    untouched = customers.pop()
    tier = make_tier()
    for customer, text in zip(customers, AWKWARD):
        customer.name = text
        customer.email = f"{len(text)}@example.com"
        customer.credit_score = None if text == "" else len(text)
        customer.tier = tier
        customer.do_not_contact, customer.do_not_contact_reason = True, "dispute"
    fields = ["name", "email", "credit_score", "tier", "do_not_contact", "do_not_contact_reason"]
    assert bulk_update_rows(customers, fields) == len(AWKWARD)

    for customer, text in zip(customers, AWKWARD):
        saved = Customer.objects.get(pk=customer.pk)
        assert saved.name == text
        assert saved.email == f"{len(text)}@example.com"
        assert saved.credit_score == (None if text == "" else len(text))
        assert (saved.tier_id, saved.do_not_contact, saved.do_not_contact_reason) == (
            tier.pk,
            True,
            "dispute",
        )
    saved = Customer.objects.get(pk=untouched.pk)
    assert (saved.name, saved.tier_id, saved.do_not_contact) == (untouched.name, None, False)


def test_decimals_and_moments_keep_their_exact_values():
    loan = make_loan(make_customer())
    installments = [make_installment(loan, seq=n, due_date=dt.date(2026, 12, n)) for n in range(1, 4)]
    paid_at = dt.datetime(2026, 12, 1, 23, 59, 59, 123456, tzinfo=dt.timezone.utc)
    installments[0].amount_paid, installments[0].paid_at = Decimal("0.01"), paid_at
    installments[1].amount_paid, installments[1].paid_at = Decimal("123456.78"), None
    installments[2].amount_paid, installments[2].paid_at = Decimal("0"), paid_at + dt.timedelta(days=1)
    assert bulk_update_rows(installments, ["amount_paid", "paid_at"]) == 3
    assert list(
        Installment.objects.filter(loan=loan).order_by("seq").values_list("amount_paid", "paid_at")
    ) == [
        (Decimal("0.01"), paid_at),
        (Decimal("123456.78"), None),
        (Decimal("0.00"), paid_at + dt.timedelta(days=1)),
    ]


@pytest.mark.parametrize("size", [1, 1203])
def test_batches_of_any_size_write_every_row(size):
    customer = make_customer()
    logs = NotificationLog.objects.bulk_create(
        [
            NotificationLog(
                customer=customer,
                channel="sms",
                kind="pre_due",
                scheduled_for=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
                dedupe_key=f"bulk:{n}",
            )
            for n in range(size)
        ]
    )
    if logs[0].pk is None:
        logs = list(NotificationLog.objects.filter(dedupe_key__startswith="bulk:").order_by("id"))
    for n, log in enumerate(logs):
        log.status, log.body, log.attempts = "sent", f"message {n}", n % 7
    assert bulk_update_rows(logs, ["status", "body", "attempts"], batch_size=500) == size
    rows = NotificationLog.objects.filter(dedupe_key__startswith="bulk:").values_list(
        "status", "body", "attempts"
    )
    assert sorted(rows, key=lambda r: int(r[1].split()[1])) == [
        ("sent", f"message {n}", n % 7) for n in range(size)
    ]


def test_an_object_without_a_key_or_the_key_among_the_fields_is_refused():
    with pytest.raises(ValueError):
        bulk_update_rows([Customer(name="new")], ["name"])
    customer = make_customer()
    with pytest.raises(ValueError):
        bulk_update_rows([customer], ["id", "name"])


def test_a_value_too_long_for_its_column_is_refused_not_cut_on_postgresql():
    from django.db import DataError, connection, transaction

    if connection.vendor != "postgresql":
        return  # SQLite does not hold text to a length
    customer = make_customer()
    customer.name = "N" * 201
    with pytest.raises(DataError), transaction.atomic():
        bulk_update_rows([customer], ["name"])
    assert Customer.objects.get(pk=customer.pk).name != "N" * 200


def test_values_every_row_shares_are_written_with_each_rows_own():
    customer = make_customer()
    logs = [
        NotificationLog.objects.create(
            customer=customer,
            channel="sms",
            kind="pre_due",
            status="planned",
            scheduled_for=dt.datetime(2026, 12, 1, 2, tzinfo=dt.timezone.utc),
            dedupe_key=f"same:{n}",
        )
        for n in range(3)
    ]
    other = NotificationLog.objects.create(
        customer=customer,
        channel="sms",
        kind="pre_due",
        status="planned",
        scheduled_for=dt.datetime(2026, 12, 1, 2, tzinfo=dt.timezone.utc),
        dedupe_key="same:other",
    )
    sent_at = dt.datetime(2026, 12, 1, 2, 0, 1, 250000, tzinfo=dt.timezone.utc)
    for n, log in enumerate(logs):
        log.body, log.attempts = f"body {n} ’", n + 1

    assert bulk_update_rows(logs, ["body", "attempts"], same={"status": "sent", "sent_at": sent_at}) == 3

    rows = NotificationLog.objects.filter(dedupe_key__startswith="same:").order_by("dedupe_key")
    assert [(r.body, r.attempts, r.status, r.sent_at) for r in rows] == [
        ("body 0 ’", 1, "sent", sent_at),
        ("body 1 ’", 2, "sent", sent_at),
        ("body 2 ’", 3, "sent", sent_at),
        (other.body, other.attempts, "planned", None),
    ]


def test_rows_given_as_values_are_written_as_the_same_objects_would_be():
    loan = make_loan(make_customer())
    installments = [make_installment(loan, seq=n, due_date=dt.date(2026, 12, n)) for n in range(1, 4)]
    paid_at = dt.datetime(2026, 12, 1, 23, 59, 59, 123456, tzinfo=dt.timezone.utc)
    rows = [(installments[0].pk, Decimal("0.01"), paid_at), (installments[2].pk, Decimal("99.90"), None)]
    assert update_rows(Installment, ["amount_paid", "paid_at"], rows) == 2
    assert list(
        Installment.objects.filter(loan=loan).order_by("seq").values_list("amount_paid", "paid_at")
    ) == [(Decimal("0.01"), paid_at), (installments[1].amount_paid, None), (Decimal("99.90"), None)]
    with pytest.raises(ValueError):
        update_rows(Installment, ["id"], [(installments[0].pk, 5)])


def test_inserted_values_are_stored_as_bulk_create_stores_them():
    loan = make_loan(make_customer())
    first, second = (make_installment(loan, seq=n, due_date=dt.date(2026, 12, n)) for n in (1, 2))
    received = dt.datetime(2026, 12, 1, 8, 30, 0, 5, tzinfo=dt.timezone.utc)
    payment = Payment.objects.create(ref="P-ins", loan=loan, amount=Decimal("10.05"), received_at=received)
    rows = [(payment.pk, first.pk, Decimal("10.00")), (payment.pk, second.pk, Decimal("0.05"))]
    assert insert_rows(PaymentAllocation, ["payment", "installment", "amount"], rows) == 2
    stored = PaymentAllocation.objects.filter(payment=payment).order_by("installment__seq")
    assert [(a.installment_id, a.amount) for a in stored] == [
        (first.pk, Decimal("10.00")),
        (second.pk, Decimal("0.05")),
    ]
    PaymentAllocation.objects.filter(payment=payment).delete()
    PaymentAllocation.objects.bulk_create(
        [PaymentAllocation(payment_id=p, installment_id=i, amount=a) for p, i, a in rows]
    )
    assert [(a.installment_id, a.amount) for a in stored.all()] == [
        (first.pk, Decimal("10.00")),
        (second.pk, Decimal("0.05")),
    ]
    assert insert_rows(PaymentAllocation, ["payment", "installment", "amount"], []) == 0


def test_values_given_in_another_type_go_through_their_field_as_bulk_update_would():
    customer = make_customer()
    rows = [(customer.pk, 42.9, 1, "dispute", "text")]  # the field makes a whole number of it, as Django does
    fields = ["credit_score", "do_not_contact", "do_not_contact_reason", "name"]
    assert update_rows(Customer, fields, rows) == 1
    customer.refresh_from_db()
    assert (customer.credit_score, customer.do_not_contact, customer.name) == (42, True, "text")


STORED_INSTALMENT = (
    "SELECT CAST(amount_paid AS TEXT), CAST(paid_at AS TEXT) FROM loans_installment WHERE id = %s"
)


def test_inserted_and_updated_values_are_stored_exactly_as_djangos_own_writes_store_them():
    """insert_rows and update_rows pass a value already of its column's type without the field's chain of
    calls (an aware moment, a Decimal, a text): the database holds the very same stored value as after
    bulk_create and bulk_update, compared as text (SQLite compares and sorts moments as their text)."""
    from django.db import connection

    loan = make_loan(make_customer())
    shanghai = dt.timezone(dt.timedelta(hours=8))
    values = [
        (Decimal("250"), dt.datetime(2026, 3, 1, 9, 0, tzinfo=shanghai)),
        (Decimal("0.10"), dt.datetime(2026, 3, 1, 23, 59, 59, 5, tzinfo=dt.timezone.utc)),
        (Decimal("1E+2"), dt.datetime(2026, 12, 31, 20, 0, 0, 999999, tzinfo=shanghai)),
    ]
    insert_rows(
        Payment,
        ["ref", "loan", "amount", "received_at", "source"],
        [(f"INS{i}", loan.pk, amount, at, "app") for i, (amount, at) in enumerate(values)],
    )
    Payment.objects.bulk_create(
        Payment(ref=f"ORM{i}", loan=loan, amount=amount, received_at=at, source="app")
        for i, (amount, at) in enumerate(values)
    )

    def stored(prefix):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT ref, CAST(amount AS TEXT), CAST(received_at AS TEXT) FROM loans_payment"
                " WHERE ref LIKE %s ORDER BY ref",
                [prefix + "%"],
            )
            return [row[1:] for row in cursor.fetchall()]

    assert stored("INS") == stored("ORM")
    installment = make_installment(loan, seq=1, due_date=dt.date(2026, 12, 1))
    for amount, at in values:
        update_rows(Installment, ["amount_paid", "paid_at"], [(installment.pk, amount, at)])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT amount_paid, paid_at FROM loans_installment WHERE id = %s", [installment.pk]
            )
            ours = cursor.fetchone()
        installment.amount_paid, installment.paid_at = amount, at
        Installment.objects.bulk_update([installment], ["amount_paid", "paid_at"])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT amount_paid, paid_at FROM loans_installment WHERE id = %s", [installment.pk]
            )
            assert cursor.fetchone() == ours
