"""Contacts looked up by a list of ids or customers are found by those, and their status is kept in Python: with
the status in SQL, PostgreSQL took the pending contacts' partial index (its statistics lag behind the day's
planning) and read every pending contact of the book for each batch of ten ids."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.cancelling import cancel_pending
from notifications.compliance import contacts_in_flight
from notifications.dispatch import _load_batch
from notifications.models import NotificationItem, NotificationLog
from tests.factories import make_customer, make_installment, make_loan
from tests.factories_audit import make_notification

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
# The log filtered by a list (ids or customers) and by the pending statuses in the same statement.
BY_LIST_AND_STATUS = re.compile(
    r'FROM "notifications_notificationlog".*"(id|customer_id)" (= ANY|IN \().*"status" IN \(.planned., .deferred.\)'
    r'|FROM "notifications_notificationlog".*"status" IN \(.planned., .deferred.\).*"(id|customer_id)" (= ANY|IN \()',
    re.S,
)


def _contacts(customer, *statuses, **kwargs):
    return [
        make_notification(
            customer=customer, status=status, scheduled_for=NOW - dt.timedelta(minutes=i), **kwargs
        )
        for i, status in enumerate(statuses)
    ]


def _log_queries(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if '"notifications_notificationlog"' in q["sql"]]


def test_a_batch_is_loaded_by_its_ids_and_keeps_only_what_is_still_pending():
    customer = make_customer()
    planned, deferred, sent = _contacts(customer, "planned", "deferred", "sent")
    with CaptureQueriesContext(connection) as ctx:
        logs, _ = _load_batch([planned.id, deferred.id, sent.id])
    assert [log.id for log in logs] == [deferred.id, planned.id]  # in the order they are due
    assert _log_queries(ctx) and not any(BY_LIST_AND_STATUS.search(sql) for sql in _log_queries(ctx))


def test_contacts_claimed_elsewhere_are_found_by_customer_and_only_pending_ones_count():
    customer = make_customer()
    claimed, sent = _contacts(customer, "planned", "sent", claimed_until=NOW + dt.timedelta(minutes=5))
    with CaptureQueriesContext(connection) as ctx:
        found = contacts_in_flight([customer.id], NOW, exclude_ids=[])
    assert found == {customer.id: [(claimed.scheduled_for, claimed.id)]}
    assert not any(BY_LIST_AND_STATUS.search(sql) for sql in _log_queries(ctx))


def test_a_payment_cancels_the_pending_contacts_of_its_instalment_found_by_their_ids():
    customer = make_customer()
    installment = make_installment(loan=make_loan(customer=customer))
    pending, sent = _contacts(customer, "planned", "sent")
    for log in (pending, sent):
        NotificationItem.objects.create(notification=log, installment=installment)
    with CaptureQueriesContext(connection) as ctx:
        cancelled = cancel_pending(reason="paid", actor="test", at=NOW, installment_ids=[installment.id])
    assert cancelled == 1
    assert NotificationLog.objects.get(pk=pending.pk).status == "cancelled"
    assert NotificationLog.objects.get(pk=sent.pk).status == "sent"
    reads = [sql for sql in _log_queries(ctx) if sql.lstrip().upper().startswith("SELECT")]
    assert reads and not any(BY_LIST_AND_STATUS.search(sql) for sql in reads)


@pytest.mark.parametrize("by", ["instalment", "customer"])
def test_a_cancellation_writes_the_contacts_it_read_locked_by_their_ids_alone(by):
    """The pending statuses beside the list of ids made PostgreSQL take the partial index for the UPDATE too
    (every pending contact of the book read for each call); the status is kept safe by the lock of the read,
    which takes the pending contacts only."""
    customer = make_customer()
    installment = make_installment(loan=make_loan(customer=customer))
    pending, deferred, sent = _contacts(customer, "planned", "deferred", "sent")
    for log in (pending, deferred, sent):
        NotificationItem.objects.create(notification=log, installment=installment)
    scope = {"installment_ids": [installment.id]} if by == "instalment" else {"customer_ids": [customer.id]}
    with CaptureQueriesContext(connection) as ctx:
        cancelled = cancel_pending(reason="paid", actor="test", at=NOW, **scope)
    assert cancelled == 2
    assert set(NotificationLog.objects.filter(status="cancelled").values_list("id", flat=True)) == {
        pending.id,
        deferred.id,
    }
    [update] = [sql for sql in _log_queries(ctx) if sql.lstrip().upper().startswith("UPDATE")]
    where = update.split(" WHERE ", 1)[1]
    assert '"id" = ANY(' in where or '"id" IN (' in where
    assert '"status"' not in where
    if connection.features.has_select_for_update:
        [locking_read] = [sql for sql in _log_queries(ctx) if sql.rstrip().endswith("FOR UPDATE")]
        assert str(pending.id) in locking_read and str(sent.id) not in locking_read


def test_a_batch_and_its_instalments_are_read_within_the_bounds_of_its_ids():
    customer = make_customer()
    first, _middle, last = _contacts(customer, "planned", "planned", "planned")
    installment = make_installment(make_loan(customer))
    NotificationItem.objects.create(notification=first, installment=installment)
    with CaptureQueriesContext(connection) as ctx:
        logs, installments_of = _load_batch([last.id, first.id])
    assert [log.id for log in logs] == [last.id, first.id]
    assert [i.id for i in installments_of[first.id]] == [installment.id]
    low, high = sorted([first.id, last.id])
    reads = [q["sql"] for q in ctx.captured_queries if "= ANY(" in q["sql"] or " IN (" in q["sql"]]
    assert len(reads) == 2
    assert all(f">= {low}" in sql and f"<= {high}" in sql for sql in reads)


def test_the_claim_takes_the_pending_contacts_in_the_order_of_their_partial_index():
    """The index serves the claim's ORDER BY ... LIMIT as it is: by the due moment alone, PostgreSQL sorted every
    pending contact due for each batch, or walked the changelist's index through every contact ever sent."""
    from notifications.dispatch import claim_due

    index = next(i for i in NotificationLog._meta.indexes if i.name == "notif_pending_due_idx")
    customer = make_customer()
    later, earlier = _contacts(customer, "planned", "deferred")
    with CaptureQueriesContext(connection) as ctx:
        assert claim_due(NOW, 10) == [earlier.id, later.id]
    [claim] = [q["sql"] for q in ctx.captured_queries if "LIMIT" in q["sql"]]
    order = claim.split("ORDER BY")[1].split("LIMIT")[0]
    # The id is the one column selected, so it may be ordered by its position.
    assert re.match(r'SELECT "notifications_notificationlog"."id"( AS "id")? FROM', claim)
    columns = [
        "id"
        if term.strip() == "1 ASC"
        else re.fullmatch(r'"notifications_notificationlog"\."(\w+)" ASC', term.strip())[1]
        for term in order.split(",")
    ]
    assert columns == list(index.fields) == ["scheduled_for", "id"]


@pytest.mark.postgres_only
def test_the_claim_merges_the_partitions_pending_indexes_in_order_rather_than_sorting_every_contact_due():
    """Planned on statistics of before the day's planning, the claim read and sorted every contact due for each
    batch; merged in index order, it stops at the batch."""
    from notifications.dispatch import claim_due

    customer = make_customer()
    _contacts(customer, *["sent"] * 20)
    with connection.cursor() as cursor:  # statistics of before the day's planning: no contact pending
        cursor.execute("ANALYZE notifications_notificationlog")
    contacts = _contacts(customer, *["planned"] * 5)
    plans = []

    def explain_the_claim(execute, sql, params, many, context):
        if "SKIP LOCKED" in sql:
            execute(f"EXPLAIN {sql}", params, many, context)
            plans.append("\n".join(row[0] for row in context["cursor"].fetchall()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain_the_claim):
        claimed = claim_due(NOW, 2)
    assert claimed == [c.id for c in sorted(contacts, key=lambda c: (c.scheduled_for, c.id))][:2]
    [plan] = plans
    assert "notif" in plan and not re.search(r"(^|->  )Sort  \(", plan, re.M), plan
    with connection.cursor() as cursor:  # the setting of the test's transaction is as it was
        cursor.execute("SHOW enable_sort")
        assert cursor.fetchone() == ("on",)
