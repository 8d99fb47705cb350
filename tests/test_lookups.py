"""``field__any_of`` selects exactly what ``field__in`` selects, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loans.models import Customer, Loan

from .factories import make_customer, make_loan

pytestmark = pytest.mark.django_db

AWKWARD = ["quote \" and ' apostrophe", "{braces},commas", "back\\slash", "王小明", "NULL", ""]


def test_any_of_selects_what_in_selects_for_numbers_strings_and_foreign_keys():
    customers = [make_customer(name=name) for name in AWKWARD]
    loans = [make_loan(c) for c in customers[:3]]
    ids = [c.pk for c in customers[::2]] + [None, customers[0].pk, 10**9]
    assert set(Customer.objects.filter(pk__any_of=ids)) == set(Customer.objects.filter(pk__in=ids))
    assert set(Customer.objects.filter(pk__any_of=ids)) == set(customers[::2])
    names = AWKWARD[1:4] + ["not there"]
    assert set(Customer.objects.filter(name__any_of=names).values_list("name", flat=True)) == set(
        AWKWARD[1:4]
    )
    assert set(Customer.objects.filter(name__any_of=[""])) == {customers[-1]}
    owners = [customers[0].pk, customers[2].pk]
    assert set(Loan.objects.filter(customer_id__any_of=owners)) == {loans[0], loans[2]}
    assert set(Loan.objects.filter(customer__any_of=owners)) == {loans[0], loans[2]}
    assert set(Loan.objects.exclude(customer_id__any_of=owners)) == {loans[1]}


def test_an_empty_list_or_only_none_matches_nothing():
    make_customer()
    assert not Customer.objects.filter(pk__any_of=[]).exists()
    assert not Customer.objects.filter(pk__any_of=[None]).exists()


def test_a_long_list_is_one_short_statement_on_postgresql():
    customers = [make_customer() for _ in range(3)]
    ids = [c.pk for c in customers] + list(range(10**8, 10**8 + 5000))
    with CaptureQueriesContext(connection) as queries:
        found = set(Customer.objects.filter(pk__any_of=ids).values_list("pk", flat=True))
    assert found == {c.pk for c in customers}
    if connection.vendor == "postgresql":
        sql = queries.captured_queries[0]["sql"]
        assert "= ANY(" in sql and "IN (" not in sql


def test_a_longer_or_finer_value_never_matches_a_stored_one_cut_to_the_column():
    from decimal import Decimal

    from .factories import make_installment

    name = "N" * 200  # Customer.name holds 200 characters
    customer = make_customer(name=name)
    installment = make_installment(make_loan(customer), amount_due=Decimal("12.35"))
    assert list(Customer.objects.filter(name__any_of=[name])) == [customer]
    assert not Customer.objects.filter(name__any_of=[name + "Z"]).exists()
    assert not type(installment).objects.filter(amount_due__any_of=[Decimal("12.345")]).exists()
    assert type(installment).objects.filter(amount_due__any_of=[Decimal("12.350")]).exists()


def test_a_long_list_of_numbers_or_texts_is_one_parameter_on_both_databases():
    """SQLite refuses a statement of more parameters than its limit ("too many SQL variables")."""
    customers = [make_customer(name=name) for name in AWKWARD]
    ids = [c.pk for c in customers] + list(range(10**8, 10**8 + 40_000))
    names = AWKWARD + [f"absent {i}" for i in range(40_000)]
    parameters = []

    def count(execute, sql, params, many, context):
        parameters.append(len(params or ()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        assert set(Customer.objects.filter(pk__any_of=ids)) == set(customers)
        assert set(Customer.objects.filter(name__any_of=names)) == set(customers)
        assert not Loan.objects.filter(customer_id__any_of=ids).exists()
        assert Customer.objects.exclude(pk__any_of=ids[1:]).get() == customers[0]
    assert parameters and max(parameters) <= 2


def test_a_list_of_whole_ids_is_not_prepared_id_by_id_and_selects_what_in_selects():
    from unittest import mock

    from django.db.models import IntegerField

    customers = [make_customer() for _ in range(4)]
    loans = [make_loan(c) for c in customers]
    ids = [c.pk for c in customers[1:3]] + [None, 10**9]
    with mock.patch.object(
        IntegerField, "get_prep_value", autospec=True, wraps=IntegerField.get_prep_value
    ) as prep:
        found = set(Customer.objects.filter(pk__any_of=ids))
        owned = set(Loan.objects.filter(customer_id__any_of=set(ids) - {None}))
        joined = set(Loan.objects.filter(customer__pk__any_of=tuple(ids)))
    assert prep.call_count < len(ids)
    assert found == set(Customer.objects.filter(pk__in=ids)) == set(customers[1:3])
    assert owned == joined == set(loans[1:3])
    # Ids given as text still go through the field, as ``in`` takes them.
    as_text = [str(c.pk) for c in customers[:2]]
    assert set(Customer.objects.filter(pk__any_of=as_text)) == set(customers[:2])
    assert set(Loan.objects.filter(customer_id__any_of=as_text)) == set(loans[:2])


def test_within_bounds_keeps_exactly_the_rows_of_the_list_beside_it():
    from core.lookups import within_bounds

    customers = [make_customer() for _ in range(5)]
    ids = [customers[3].pk, None, customers[1].pk]
    bounded = Customer.objects.filter(within_bounds("pk", ids), pk__any_of=ids)
    assert set(bounded) == {customers[1], customers[3]}
    assert set(Customer.objects.filter(within_bounds("pk", ids))) == set(customers[1:4])
    assert Customer.objects.filter(within_bounds("pk", [])).count() == 5
    assert Customer.objects.filter(within_bounds("pk", [None])).count() == 5


def test_within_bounds_of_texts_keeps_every_row_of_the_list_whatever_their_order():
    refs = ["b-2", "B-10", "a-1", "Ä-3", "z", "Z-9"]
    loans = {ref: make_loan(make_customer(), ref=ref) for ref in refs}
    make_loan(make_customer(), ref="zz-not-listed")
    listed = ["Z-9", "a-1", None, "B-10", "Ä-3"]
    with CaptureQueriesContext(connection) as ctx:
        found = set(Loan.objects.filter(ref__any_of=listed, ref__within_bounds_of=listed))
    assert found == {loans[r] for r in ("Z-9", "a-1", "B-10", "Ä-3")}
    [sql] = [q["sql"] for q in ctx.captured_queries]
    if connection.vendor == "postgresql":
        # The range is the database's own (its collation), never Python's order of the texts.
        assert "BETWEEN (SELECT min(v) FROM unnest(" in sql
    else:
        assert "BETWEEN" not in sql  # SQLite searches the index for each value already
    # Alone, the range holds every row of the list (and what sorts between them), and nothing without a list.
    within = set(Loan.objects.filter(ref__within_bounds_of=listed))
    assert within >= found
    assert Loan.objects.filter(ref__within_bounds_of=[None]).count() == len(refs) + 1
