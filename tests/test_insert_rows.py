"""insert_rows stores what bulk_create stores (defaults, awkward values, conflicts ignored or refused), on SQLite and
on PostgreSQL, whatever the batch size."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import IntegrityError, transaction

from core.bulk import insert_rows
from notifications.models import NotificationItem, NotificationLog, OutboxMessage

from .factories import make_customer, make_installment, make_loan, make_tier

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 12, 1, 1, 30, 0, 7, tzinfo=dt.timezone.utc)
LOG_FIELDS = [
    "customer",
    "tier",
    "policy_version",
    "channel",
    "kind",
    "due_date",
    "offset_days",
    "scheduled_for",
    "loan_refs",
    "dedupe_key",
]
TEXTS = ["quote \" and ' apostrophe", "back\\slash {braces}, NULL", "line\nbreak\ttab", "王小明 😀", ""]
# What the database makes or the moment of the call: compared apart.
APART = {"id", "idempotency_key", "dedupe_key", "created_at", "updated_at"}


def log_rows(prefix: str) -> list[tuple]:
    customer, other = make_customer(), make_customer()
    tier = make_tier()
    rows = []
    for i, text in enumerate(TEXTS):
        rows.append(
            (
                customer.pk if i % 2 else str(other.pk),  # a key given as text goes through its field
                tier.pk if i % 2 else None,
                None,
                "sms",
                "pre_due",
                dt.date(2026, 12, i + 1) if i != 3 else None,
                -i if i != 2 else "7",  # a number given as text too
                AT + dt.timedelta(minutes=i),
                text,
                f"{prefix}:{i}",
            )
        )
    return rows


def stored(prefix: str) -> list[dict]:
    rows = NotificationLog.objects.filter(dedupe_key__startswith=f"{prefix}:").order_by("dedupe_key").values()
    return [{k: v for k, v in row.items() if k not in APART} for row in rows]


@pytest.mark.parametrize("batch_size", [2, 5000])
def test_it_stores_what_bulk_create_stores_defaults_included(batch_size):
    given = log_rows("fast")
    assert insert_rows(NotificationLog, LOG_FIELDS, given, batch_size=batch_size) == len(given)
    NotificationLog.objects.bulk_create(
        [
            NotificationLog(
                customer_id=row[0],
                tier_id=row[1],
                policy_version_id=row[2],
                channel=row[3],
                kind=row[4],
                due_date=row[5],
                offset_days=row[6],
                scheduled_for=row[7],
                loan_refs=row[8],
                dedupe_key="plain" + row[9][4:],
            )
            for row in given
        ]
    )

    fast, plain = stored("fast"), stored("plain")
    assert fast == plain and len(fast) == len(TEXTS)
    assert fast[2]["offset_days"] == 7 and fast[0]["status"] == NotificationLog.Status.PLANNED
    assert [row["loan_refs"] for row in fast] == TEXTS
    made = NotificationLog.objects.filter(dedupe_key__startswith="fast:")
    keys = [row.idempotency_key for row in made]
    assert len(set(keys)) == len(TEXTS) and all(isinstance(key, uuid.UUID) for key in keys)
    assert all(row.created_at is not None and row.created_at == row.updated_at for row in made)


def test_a_conflict_is_left_out_when_asked_and_refused_otherwise():
    customer = make_customer()
    loan = make_loan(customer)
    first, second = (make_installment(loan, seq=n, due_date=dt.date(2026, 12, n)) for n in (1, 2))
    [log_id] = [
        NotificationLog.objects.create(
            customer=customer, channel="sms", kind="pre_due", scheduled_for=AT, dedupe_key="k"
        ).pk
    ]
    assert insert_rows(NotificationItem, ["notification", "installment"], [(log_id, first.pk)]) == 1

    rows = [(log_id, first.pk), (log_id, second.pk)]
    assert insert_rows(NotificationItem, ["notification", "installment"], rows, ignore_conflicts=True) == 1
    assert sorted(NotificationItem.objects.values_list("notification_id", "installment_id")) == sorted(rows)

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(
            OutboxMessage,
            ["channel", "destination", "body", "idempotency_key", "provider_message_id"],
            [("sms", "+86", "new", uuid.uuid4(), "p-1"), ("sms", "+86", "again", uuid.uuid4(), "p-1")],
        )
    assert not OutboxMessage.objects.exists()  # nothing of the refused call stays


def test_rows_of_a_model_with_a_moment_of_creation_get_the_moment_of_the_call():
    key = uuid.uuid4()
    fields = ["channel", "destination", "subject", "body", "idempotency_key", "provider_message_id"]
    assert insert_rows(OutboxMessage, fields, [("email", "a@example.com", "S", "B", key, "p-2")]) == 1
    row = OutboxMessage.objects.get()
    assert (row.idempotency_key, row.subject, row.body, row.provider_message_id) == (key, "S", "B", "p-2")
    assert row.created_at is not None and row.created_at.tzinfo is not None
    assert insert_rows(OutboxMessage, fields, []) == 0
