"""The notification log's search resolves the reference first and filters the log by ids: filtered by a join to
the customers or a subquery of the items, PostgreSQL walked the changelist's index over every monthly partition
and tested each row (seconds for a customer with a few contacts)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backoffice import roles
from notifications.exports import notification_queryset
from notifications.log_search import log_search_q
from notifications.models import NotificationLog
from tests.factories import make_customer, make_installment, make_loan, make_user
from tests.factories_operator import make_log

pytestmark = pytest.mark.django_db

LOGS = "/admin/notifications/notificationlog/"


def _filters_of_log_statements(ctx) -> list[str]:
    statements = [
        q["sql"] for q in ctx.captured_queries if 'FROM "notifications_notificationlog"' in q["sql"]
    ]
    return [sql.split(" WHERE ", 1)[1] for sql in statements if " WHERE " in sql]


@pytest.fixture
def book():
    bob, carol = make_customer(ref="C-BOB"), make_customer(ref="C-CAROL")
    bob_loan, carol_loan = make_loan(bob, ref="L-BOB"), make_loan(carol, ref="L-CAROL")
    bob_log = make_log(bob, installments=[make_installment(bob_loan)])
    carol_log = make_log(carol, installments=[make_installment(carol_loan)])
    return {"bob": bob_log, "carol": carol_log}


def test_it_finds_a_customers_contacts_and_a_loans_contacts(book):
    assert list(NotificationLog.objects.filter(log_search_q("c-bob"))) == [book["bob"]]
    assert list(NotificationLog.objects.filter(log_search_q("L-CAROL"))) == [book["carol"]]
    assert not NotificationLog.objects.filter(log_search_q("NOBODY")).exists()


def test_the_changelist_filters_the_log_by_ids_not_by_a_join_or_a_subquery(client, book):
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(LOGS, {"q": "C-BOB"})
    assert response.status_code == 200
    filters = _filters_of_log_statements(ctx)
    assert filters, "the changelist read no log rows"
    for where in filters:
        assert re.search(r'"notifications_notificationlog"\."customer_id" (IN \(|= ANY)', where), where
        assert '"loans_customer"."ref"' not in where and "SELECT" not in where, where


def test_an_export_of_a_search_holds_what_the_list_showed(book):
    assert list(notification_queryset({"q": "L-BOB"})) == [book["bob"]]
