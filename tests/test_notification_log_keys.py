"""A contact's dedupe key and idempotency key stay unique across the whole log, partitioned or not: a taken key
is refused, the planner's insert of a taken key adds nothing, a key changed or freed can be taken again."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from notifications.models import NotificationLog
from tests.factories import make_customer
from tests.factories_audit import make_notification

pytestmark = pytest.mark.django_db


def test_it_refuses_a_second_contact_with_a_taken_dedupe_key_or_idempotency_key():
    first = make_notification(dedupe_key="rule:1:2026-12-01:sms")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_notification(customer=first.customer, dedupe_key="rule:1:2026-12-01:sms")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_notification(customer=first.customer, idempotency_key=first.idempotency_key)
    assert NotificationLog.objects.count() == 1


def test_the_planners_insert_of_a_taken_key_adds_nothing():
    customer = make_customer()
    make_notification(customer=customer, dedupe_key="taken")
    planned = make_notification(customer=customer, dedupe_key="other").scheduled_for
    NotificationLog.objects.bulk_create(
        [
            NotificationLog(
                customer=customer, channel="sms", kind="pre_due", scheduled_for=planned, dedupe_key=key
            )
            for key in ("taken", "new", "new")
        ],
        ignore_conflicts=True,
    )
    assert sorted(NotificationLog.objects.values_list("dedupe_key", flat=True)) == ["new", "other", "taken"]


def test_a_key_changed_or_freed_is_taken_again():
    cancelled = make_notification(dedupe_key="rule:7")
    NotificationLog.objects.filter(pk=cancelled.pk).update(dedupe_key="rule:7:cancelled:1")
    again = make_notification(customer=cancelled.customer, dedupe_key="rule:7")
    with pytest.raises(IntegrityError), transaction.atomic():
        NotificationLog.objects.filter(pk=again.pk).update(dedupe_key="rule:7:cancelled:1")
    again.delete()
    assert make_notification(customer=cancelled.customer, dedupe_key="rule:7").pk != again.pk
