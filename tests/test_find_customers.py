"""Finding a customer by a reference, any part of a phone number in any format, a name or an email."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backoffice import roles
from loans.customer_search import customer_search_q, phone_digits
from loans.models import Customer
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db

URL = "/admin/loans/customer/"


@pytest.fixture
def bob(db):
    make_customer(ref="C-OTHER", name="Carol King", phone="+8613911112222", email="carol@example.com")
    return make_customer(ref="C-BOB", name="Bob Lee", phone="+8613800138000", email="bob.lee@example.com")


def found(client, term) -> list[str]:
    response = client.get(URL, {"q": term})
    assert response.status_code == 200
    return [c.ref for c in response.context["cl"].result_list]


@pytest.mark.parametrize(
    "term",
    [
        "138 0013",
        "+86 138 0013 8000",
        "+86-138-0013-8000",
        "(0)138 0013 8000",
        "0138 0013 8000",
        "13800138000",
        "8000",
        "Lee",
        "bob lee",
        "bob.lee@",
        "c-bob",
    ],
)
def test_operations_find_a_customer_by_any_part_of_what_they_know(client, bob, term):
    client.force_login(make_user("ops", group=roles.OPERATIONS))

    assert found(client, term) == ["C-BOB"]


def test_a_user_without_the_personal_data_permission_finds_by_reference_only(client, bob):
    client.force_login(make_user("officer", group=roles.COMPLIANCE_OFFICER))

    for term in ("138 0013", "+86 138 0013 8000", "Lee", "bob.lee@"):
        assert found(client, term) == [], term
    assert found(client, "C-BOB") == ["C-BOB"] and found(client, "c-bob") == ["C-BOB"]


def test_a_few_digits_are_not_a_phone_number():
    assert phone_digits("138") == []
    assert phone_digits("Lee 138") == []
    assert phone_digits("0044 7911 123456") == ["00447911123456", "447911123456"]


def test_the_search_costs_the_same_queries_for_few_or_many_customers(client, bob):
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    client.get(URL, {"q": "138 0013"})  # warm the caches of this process
    with CaptureQueriesContext(connection) as few:
        client.get(URL, {"q": "138 0013"})
    for n in range(30):
        make_customer(phone=f"+861380013{n:04d}")
    with CaptureQueriesContext(connection) as many:
        response = client.get(URL, {"q": "138 0013"})

    assert len(response.context["cl"].result_list) == 31
    assert len(many) == len(few)


def test_the_autocomplete_of_other_models_finds_customers_by_phone_for_operations(client, bob):
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    query = {"app_label": "loans", "model_name": "loan", "field_name": "customer", "term": "138 0013"}

    results = client.get(reverse("admin:autocomplete"), query).json()["results"]

    assert [r["text"] for r in results] == ["C-BOB"]


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    "term, index",
    [
        ("138 0013", "loans_customer_phone_trgm"),
        ("Lee", "loans_customer_name_trgm"),
        ("bob.lee@", "loans_customer_email_trgm"),
    ],
)
def test_on_postgresql_a_search_reads_a_trigram_index_not_the_table(bob, term, index):
    qs = Customer.objects.filter(customer_search_q(term, personal=True))
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        # A table this small is read whole whatever its indexes: ask the planner how it would read a big one.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert index in plan, plan
