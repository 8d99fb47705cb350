"""Addresses a provider says are dead: a push token FCM no longer knows, a mailbox that hard-bounced.

Such an address is removed from every customer that has it, so the dispatcher never sends there again: the
channel then has no destination, which the send-time gates already handle (the next channel of the tier, or
suppressed with ``no_destination``). A new address written by an operator or an import is used again.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from core.audit import Event, log_events
from loans.models import Customer

from .choices import Channel

# The customer field that holds each channel's address (the phone also serves calls: it is never dropped here).
FORGETTABLE_FIELDS = {Channel.PUSH.value: "push_token", Channel.EMAIL.value: "email"}
CUSTOMER_TYPE = Customer._meta.label


class DeadDestination(NamedTuple):
    channel: str
    destination: str
    reason: str


def forget_destinations(dead: Iterable[DeadDestination], *, at: dt.datetime, actor: str) -> int:
    """Clear each dead address (push token, email) from the customers that have it (emails compared without
    case); addresses of other channels are ignored. Writes ``notifications.destination.forgotten`` per customer
    with the field, the old value and the provider's reason. Returns how many customers changed."""
    by_field: dict[str, dict[str, str]] = defaultdict(dict)
    for item in dead:
        field = FORGETTABLE_FIELDS.get(item.channel)
        if field and item.destination:
            value = item.destination.lower() if field == "email" else item.destination
            by_field[field].setdefault(value, item.reason)
    changed = 0
    with transaction.atomic():
        for field, reasons in by_field.items():
            qs = Customer.objects.all()
            if field == "email":
                qs = qs.annotate(match=Lower("email")).filter(match__in=list(reasons))
            else:
                qs = qs.filter(push_token__in=list(reasons))
            rows = list(qs.select_for_update().values_list("id", field))
            if not rows:
                continue
            Customer.objects.filter(id__in=[id_ for id_, _value in rows]).update(
                **{field: "", "updated_at": timezone.now()}
            )
            log_events(
                Event(
                    action="notifications.destination.forgotten",
                    actor=actor,
                    object_type=CUSTOMER_TYPE,
                    object_id=str(id_),
                    at=at,
                    before={field: value},
                    after={
                        field: "",
                        "reason": reasons[value.lower() if field == "email" else value],
                    },
                )
                for id_, value in rows
            )
            changed += len(rows)
    return changed
