"""A payment belongs to a loan and is allocated by the due-date-order waterfall: the oldest unpaid instalment
first (an explicit instalment is where it starts), never above an instalment's amount due, what is left is the
loan's credit. The allocation is stored per payment and instalment, the same whichever path recorded it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.imports.resource import run_import
from core.models import AuditEvent
from loans.allocation import Instalment, Receipt, Unpaid, allocate, allocate_loan
from loans.models import Installment, Loan, Payment, PaymentAllocation
from loans.resources import PaymentResource
from loans.services import reallocate_loans, record_payment

from .factories import make_customer, make_installment, make_loan, make_user

AT = dt.datetime(2026, 12, 10, 2, 0, tzinfo=dt.UTC)
D = Decimal
HEADER = "ref,loan_ref,installment_seq,amount,received_at,source"


# --- the rule, as a table --------------------------------------------------------------------------------
UNPAID = [
    Unpaid("i3", 3, dt.date(2026, 12, 1), D("4000")),
    Unpaid("i2", 2, dt.date(2026, 11, 1), D("4000")),
    Unpaid("i4", 4, dt.date(2027, 1, 1), D("4000")),
]


@pytest.mark.parametrize(
    ("amount", "start_seq", "allocations", "credit"),
    [
        ("8000", None, [("i2", "4000"), ("i3", "4000")], "0"),
        ("8000", 2, [("i2", "4000"), ("i3", "4000")], "0"),  # the issue: never 8,000 on instalment 2
        ("5000", 3, [("i3", "4000"), ("i2", "1000")], "0"),  # the chosen one first, then oldest first
        ("1000", None, [("i2", "1000")], "0"),
        ("13000", None, [("i2", "4000"), ("i3", "4000"), ("i4", "4000")], "1000"),
        ("100", 9, [("i2", "100")], "0"),  # a start that is not unpaid: the plain waterfall
    ],
)
def test_it_allocates_by_due_date_order_from_the_start_chosen(amount, start_seq, allocations, credit):
    got, left = allocate(D(amount), UNPAID, start_seq)
    assert got == [(key, D(value)) for key, value in allocations]
    assert left == D(credit)


def test_it_never_pays_an_instalment_above_what_is_still_due():
    unpaid = [Unpaid("a", 1, dt.date(2026, 1, 1), D("0")), Unpaid("b", 2, dt.date(2026, 2, 1), D("10"))]
    assert allocate(D("25"), unpaid) == ([("b", D("10"))], D("15"))


def test_it_replays_a_loans_payments_in_the_order_they_were_received():
    instalments = [Instalment(n, n, dt.date(2026, n, 1), D("100")) for n in (1, 2, 3)]
    later = Receipt("p2", D("150"), AT + dt.timedelta(days=1))
    earlier = Receipt("p1", D("120"), AT, start_seq=2)
    outcome = allocate_loan(instalments, [later, earlier])
    assert outcome.allocations == {
        ("p1", 2): D("100"),
        ("p1", 1): D("20"),
        ("p2", 1): D("80"),
        ("p2", 3): D("70"),
    }
    assert outcome.amount_paid == {1: D("100"), 2: D("100"), 3: D("70")}
    assert outcome.paid_at == {1: later.received_at, 2: AT, 3: None}
    assert outcome.credit == 0


# --- stored, on every path -------------------------------------------------------------------------------


def arrears_loan(ref="LA1"):
    """Four instalments of 4,000; the first paid; 8,000 in arrears (the second and third)."""
    loan = make_loan(make_customer(), ref=ref)
    insts = [
        make_installment(loan, seq=n, due_date=due, amount_due=D("4000.00"))
        for n, due in enumerate(
            [dt.date(2026, 10, 1), dt.date(2026, 11, 1), dt.date(2026, 12, 1), dt.date(2027, 1, 1)], 1
        )
    ]
    record_payment(
        loan=loan, amount=D("4000"), received_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC), ref=f"{ref}-P1"
    )
    return loan, insts


def allocations_of(loan) -> list[tuple[str, int, Decimal]]:
    return list(
        PaymentAllocation.objects.filter(installment__loan=loan)
        .order_by("payment__received_at", "payment__ref", "installment__seq")
        .values_list("payment__ref", "installment__seq", "amount")
    )


def paid(loan) -> list[tuple[int, Decimal, bool]]:
    return [(i.seq, i.amount_paid, i.paid_at is not None) for i in loan.installments.order_by("seq")]


@pytest.mark.django_db
def test_it_books_eight_thousand_on_instalment_two_as_two_and_three_never_eight_on_two():
    loan, (_first, second, _third, _fourth) = arrears_loan()
    record_payment(loan=loan, installment=second, amount=D("8000"), received_at=AT, ref="P8000")
    assert allocations_of(loan) == [
        ("LA1-P1", 1, D("4000")),
        ("P8000", 2, D("4000")),
        ("P8000", 3, D("4000")),
    ]
    assert paid(loan) == [
        (1, D("4000"), True),
        (2, D("4000"), True),
        (3, D("4000"), True),
        (4, D("0"), False),
    ]
    event = AuditEvent.objects.get(action="loans.payment.allocated", after__ref="P8000")
    paid_at = AT.isoformat().replace("+00:00", "Z")
    assert event.after["allocations"] == [
        {"id": second.pk, "seq": 2, "amount": "4000.00", "paid_at": paid_at},
        {"id": _third.pk, "seq": 3, "amount": "4000.00", "paid_at": paid_at},
    ]
    assert event.after["credit"] == "0.00" and event.after["start_seq"] == 2
    # The allocation event tells that both became paid in full: no event of their own.
    assert not AuditEvent.objects.filter(action="loans.installment.paid").exists()


@pytest.mark.django_db
def test_a_part_payment_lists_its_instalment_without_paid_at_and_the_one_completing_it_with_it():
    loan, (_first, second, _third, _fourth) = arrears_loan()
    record_payment(loan=loan, amount=D("1000"), received_at=AT, ref="PPART")
    later = AT + dt.timedelta(hours=3)
    record_payment(loan=loan, amount=D("3000"), received_at=later, ref="PREST")
    part = AuditEvent.objects.get(action="loans.payment.allocated", after__ref="PPART")
    rest = AuditEvent.objects.get(action="loans.payment.allocated", after__ref="PREST")
    assert part.after["allocations"] == [{"id": second.pk, "seq": 2, "amount": "1000.00"}]
    assert rest.after["allocations"] == [
        {"id": second.pk, "seq": 2, "amount": "3000.00", "paid_at": later.isoformat().replace("+00:00", "Z")}
    ]


@pytest.mark.django_db
def test_an_instalment_paid_in_full_by_no_allocation_of_the_call_still_has_its_own_event():
    loan, (_first, second, _third, _fourth) = arrears_loan()
    record_payment(loan=loan, amount=D("3000"), received_at=AT, ref="PLOW")
    events = AuditEvent.objects.count()
    Installment.objects.filter(pk=second.pk).update(amount_due=D("3000"))
    reallocate_loans([loan.pk], AT + dt.timedelta(days=1))
    second.refresh_from_db()
    assert second.paid_at == AT and second.amount_paid == D("3000")
    new = AuditEvent.objects.filter(seq__gt=events)
    assert not new.filter(action="loans.payment.allocated").exists()
    event = new.get(action="loans.installment.paid")
    assert event.object_id == str(second.pk)
    assert event.after["seq"] == 2 and event.after["amount_paid"] == "3000.00"


@pytest.mark.django_db
def test_it_keeps_what_is_left_after_the_balance_as_the_loans_credit_and_shows_it(client):
    loan, _insts = arrears_loan()
    record_payment(loan=loan, amount=D("12500"), received_at=AT, ref="PBIG")
    loan.refresh_from_db()
    assert loan.credit == D("500.00") and loan.status == Loan.Status.PAID_OFF
    assert all(i.amount_paid <= i.amount_due for i in loan.installments.all())
    assert AuditEvent.objects.filter(action="loans.loan.credit_changed", object_id=str(loan.pk)).exists()

    client.force_login(make_user("boss", is_superuser=True))
    page = client.get(reverse("admin:loans_loan_change", args=[loan.pk])).content.decode()
    assert "500.00" in page  # the credit
    assert "#2: 4000.00, #3: 4000.00, #4: 4000.00" in page  # what the payment paid
    assert "PBIG: 4000.00" in page  # an instalment's "paid by"

    # A new instalment takes the credit, as the waterfall would have given it.
    make_installment(loan, seq=5, due_date=dt.date(2027, 2, 1), amount_due=D("4000.00"))
    reallocate_loans([loan.pk], AT, actor="test")
    loan.refresh_from_db()
    assert loan.credit == 0 and loan.status == Loan.Status.ACTIVE
    assert paid(loan)[-1] == (5, D("500.00"), False)


@pytest.mark.django_db
def test_a_reversed_payment_reallocates_the_loans_other_payments(client):
    loan, (_first, second, _third, _fourth) = arrears_loan()
    early = record_payment(loan=loan, amount=D("4000"), received_at=AT, ref="PE")
    record_payment(loan=loan, amount=D("3000"), received_at=AT + dt.timedelta(hours=1), ref="PL")
    assert paid(loan)[1:3] == [(2, D("4000"), True), (3, D("3000"), False)]

    client.force_login(make_user("boss", is_superuser=True))
    response = client.post(reverse("admin:loans_payment_delete", args=[early.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert allocations_of(loan) == [("LA1-P1", 1, D("4000")), ("PL", 2, D("3000"))]
    assert paid(loan)[1:3] == [(2, D("3000"), False), (3, D("0"), False)]
    deleted = AuditEvent.objects.get(action="loans.payment.deleted", object_id=str(early.pk))
    assert deleted.before["allocations"] == [{"seq": 2, "amount": "4000.00"}]
    second.refresh_from_db()
    assert second.paid_at is None


@pytest.mark.django_db
def test_an_operator_enters_a_payment_by_loan_reference_and_instalment_number(client):
    loan, _insts = arrears_loan()
    client.force_login(make_user("boss", is_superuser=True))
    url = reverse("admin:loans_payment_add")
    form = {
        "ref": "ADM1",
        "loan_ref": "LA1",
        "installment_seq": "2",
        "amount": "8000",
        "received_at_0": "2026-12-10",
        "received_at_1": "10:00:00",
        "source": "bank_transfer",
    }
    page = client.get(url).content.decode()
    assert 'name="loan_ref"' in page and 'name="loan"' not in page

    bad = client.post(url, {**form, "loan_ref": "NOPE"})
    assert bad.status_code == 200 and "No loan has the reference" in bad.content.decode()
    bad = client.post(url, {**form, "installment_seq": "9"})
    assert bad.status_code == 200 and "has no instalment 9" in bad.content.decode()
    assert not Payment.objects.filter(ref="ADM1").exists()

    assert client.post(url, form).status_code == 302
    assert allocations_of(loan)[1:] == [("ADM1", 2, D("4000")), ("ADM1", 3, D("4000"))]

    # A correction (the amount was 5,000) re-allocates.
    payment = Payment.objects.get(ref="ADM1")
    change = reverse("admin:loans_payment_change", args=[payment.pk])
    assert 'value="LA1"' in client.get(change).content.decode()
    assert client.post(change, {**form, "amount": "5000"}).status_code == 302
    assert allocations_of(loan)[1:] == [("ADM1", 2, D("4000")), ("ADM1", 3, D("1000"))]
    assert AuditEvent.objects.filter(action="loans.payment.changed", object_id=str(payment.pk)).exists()


def payments_file(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


@pytest.mark.django_db
def test_reimporting_the_same_payments_changes_nothing_and_a_corrected_file_reallocates():
    loan, _insts = arrears_loan()
    data = payments_file(
        "IP1,LA1,2,8000,2026-12-10T10:00:00+08:00,bank_transfer",
        "IP2,LA1,,500,2026-12-11T10:00:00+08:00,app",
    )
    assert run_import(PaymentResource(), data)[1] == []
    first = list(
        PaymentAllocation.objects.order_by("pk").values_list("pk", "payment_id", "installment_id", "amount")
    )
    assert allocations_of(loan)[1:] == [("IP1", 2, D("4000")), ("IP1", 3, D("4000")), ("IP2", 4, D("500"))]
    events = AuditEvent.objects.count()

    assert run_import(PaymentResource(), data)[1] == []
    again = list(
        PaymentAllocation.objects.order_by("pk").values_list("pk", "payment_id", "installment_id", "amount")
    )
    assert again == first
    assert paid(loan)[3] == (4, D("500.00"), False)
    # Only the import's own event: no allocation, instalment or loan event.
    assert list(AuditEvent.objects.filter(seq__gt=events).values_list("action", flat=True)) == [
        "backoffice.import.completed"
    ]

    corrected = data.replace(",8000,", ",6000,")
    assert run_import(PaymentResource(), corrected)[1] == []
    assert allocations_of(loan)[1:] == [("IP1", 2, D("4000")), ("IP1", 3, D("2000")), ("IP2", 3, D("500"))]


def outcome_of_import(data: str, fast: bool) -> dict:
    with transaction.atomic():
        resource = PaymentResource()
        resource.fast_import = fast
        _result, errors = run_import(resource, data)
        seen = {
            "errors": errors,
            "allocations": sorted(
                PaymentAllocation.objects.values_list(
                    "payment__ref", "installment__loan__ref", "installment__seq", "amount"
                )
            ),
            "instalments": sorted(
                Installment.objects.values_list("loan__ref", "seq", "amount_paid", "paid_at")
            ),
            "loans": sorted(Loan.objects.values_list("ref", "status", "credit")),
            "events": sorted(
                (e.action, e.after.get("ref"), str(e.after.get("allocations")))
                for e in AuditEvent.objects.exclude(action="backoffice.import.completed").filter(
                    action__startswith="loans."
                )
            ),
        }
        transaction.set_rollback(True)
    return seen


@pytest.mark.django_db
def test_the_import_fast_path_allocates_exactly_as_the_plain_path():
    arrears_loan("LA1")
    arrears_loan("LA2")
    data = payments_file(
        "FP1,LA1,3,5000,2026-12-10T10:00:00+08:00,bank_transfer",
        "FP2,LA2,,9000,2026-12-10T10:00:00+08:00,app",
        "FP3,LA1,,20000,2026-12-12T10:00:00+08:00,app",
        "LA2-P1,LA2,,4000,2026-10-01T08:00:00+08:00,app",
    )
    plain, fast = outcome_of_import(data, False), outcome_of_import(data, True)
    assert plain == fast
    assert ("FP3", "LA1", 4, D("4000.00")) in fast["allocations"]
    assert ("LA1", "paid_off", D("13000.00")) in fast["loans"]


def import_queries(n: int) -> int:
    for k in range(n):
        loan = make_loan(make_customer(), ref=f"QL{n}-{k}")
        make_installment(loan, seq=1, due_date=dt.date(2026, 11, 1), amount_due=D("100.00"))
        make_installment(loan, seq=2, due_date=dt.date(2026, 12, 1), amount_due=D("100.00"))
    data = payments_file(*(f"Q{n}-{k},QL{n}-{k},,150,2026-12-10T10:00:00+08:00,app" for k in range(n)))
    with CaptureQueriesContext(connection) as ctx:
        assert run_import(PaymentResource(), data)[1] == []
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_the_import_allocates_set_based_without_a_query_per_row():
    assert import_queries(5) == import_queries(25)
    assert PaymentAllocation.objects.filter(payment__ref__startswith="Q25-").count() == 50


@pytest.mark.django_db
def test_the_loan_timeline_says_which_payment_paid_which_instalment(client):
    loan, (_first, second, _third, _fourth) = arrears_loan()
    record_payment(loan=loan, installment=second, amount=D("8500"), received_at=AT, ref="PT1")
    client.force_login(make_user("boss", is_superuser=True))
    page = client.get(f"/admin/loans/loan/{loan.pk}/timeline/").content.decode()
    assert "PT1" in page and "#2: CNY 4,000.00, #3: CNY 4,000.00, #4: CNY 500.00" in page
    assert "LA1-P1" in page and "#1: CNY 4,000.00" in page


@pytest.mark.django_db
def test_a_payment_on_a_loan_already_paid_is_kept_whole_as_credit_and_audited():
    loan, _insts = arrears_loan()
    record_payment(loan=loan, amount=D("12000"), received_at=AT, ref="PALL")
    record_payment(loan=loan, amount=D("300"), received_at=AT + dt.timedelta(days=1), ref="PMORE")
    loan.refresh_from_db()
    assert loan.credit == D("300.00")
    event = AuditEvent.objects.get(action="loans.payment.allocated", after__ref="PMORE")
    assert event.after["allocations"] == [] and event.after["credit"] == "300.00"


def _loans_paid_by(prefix: str, loans: int, payments_each: int) -> list[int]:
    """``loans`` loans of two instalments of 100.00, each paid in full by ``payments_each`` equal payments."""
    ids = []
    for n in range(loans):
        loan = make_loan(make_customer(), ref=f"{prefix}{n}")
        make_installment(loan, seq=1, due_date=dt.date(2026, 11, 1), amount_due=D("100.00"))
        make_installment(loan, seq=2, due_date=dt.date(2026, 12, 1), amount_due=D("100.00"))
        Payment.objects.bulk_create(
            Payment(
                ref=f"{prefix}{n}-{k}",
                loan=loan,
                amount=D("200.00") / payments_each,
                received_at=AT + dt.timedelta(minutes=k),
            )
            for k in range(payments_each)
        )
        ids.append(loan.pk)
    return ids


@pytest.mark.django_db
def test_each_chunk_of_loans_is_allocated_in_the_same_few_queries_whatever_its_payments(monkeypatch):
    """Re-allocation is set-based per chunk of loans: the queries grow by the same few per chunk, not with the
    payments, the allocations or the events a chunk writes (every loan here is paid off: allocations written,
    instalments paid, loans closed, the cure's receivers run)."""
    import functools

    from loans import services

    monkeypatch.setattr(services, "chunks", functools.partial(services.chunks, size=4))

    def queries(ids):
        with CaptureQueriesContext(connection) as ctx:
            reallocate_loans(ids, AT)
        return len(ctx.captured_queries)

    queries(_loans_paid_by("QW", 4, 1))  # what a process looks up once (content types) is not a chunk's
    one_chunk = queries(_loans_paid_by("QA", 4, 1))
    two_chunks = queries(_loans_paid_by("QB", 8, 1))
    two_chunks_more_payments = queries(_loans_paid_by("QC", 8, 4))
    per_chunk = two_chunks - one_chunk
    assert two_chunks_more_payments == two_chunks
    assert queries(_loans_paid_by("QD", 12, 2)) == two_chunks + per_chunk
    assert per_chunk <= 20  # reads, writes, the chain head, the cure's reads, their savepoints
    assert Loan.objects.filter(ref__startswith="QC", status=Loan.Status.PAID_OFF).count() == 8
    assert PaymentAllocation.objects.filter(payment__ref__startswith="QC").count() == 8 * 4
