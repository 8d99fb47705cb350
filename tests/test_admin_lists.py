"""Admin lists over the loan book never COUNT a big table."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backoffice.admin import LargeTablePaginator
from loans.models import Customer
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db


class TinyThreshold(LargeTablePaginator):
    EXACT_BELOW = 1


@pytest.mark.postgres_only
def test_an_unfiltered_big_table_is_paged_with_the_planner_estimate_not_a_count():
    for _ in range(5):
        make_customer()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE loans_customer")
    paginator = TinyThreshold(Customer.objects.order_by("pk"), 2)
    with CaptureQueriesContext(connection) as ctx:
        estimate = paginator.count
    assert not any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)
    assert estimate >= 1


def test_a_small_table_is_counted_exactly():
    for _ in range(3):
        make_customer()
    assert LargeTablePaginator(Customer.objects.order_by("pk"), 2).count == Customer.objects.count()


def test_the_customer_list_does_not_count_the_whole_table_a_second_time(client):
    make_customer()
    client.force_login(make_user("lists-admin", is_superuser=True))
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("admin:loans_customer_changelist") + "?q=C").status_code == 200
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper() and "loans_customer" in q["sql"]]
    assert len(counts) <= 1  # the filtered result only; show_full_result_count is off
