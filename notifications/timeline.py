"""The messages of a customer's timeline: every planned contact and its fate, with the reason code.

"Why did this customer not get the SMS for the second loan?" is answered by these rows: each shows the loans the
contact covered, its status and reason in plain words, the message as rendered and the delivery receipt.
Personal data is masked by the viewer's ``Masker``. The page that shows them beside calls, promises and
payments is composed above the apps (the back office's customer page).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse

from core.masking import Masker, known_of
from loans.models import Customer, Loan

from .choices import Channel, Kind
from .models import NotificationLog

# "notifications.NotificationLog": the object type the audit events about a contact carry.
LOG_OBJECT_TYPE = NotificationLog._meta.label
# A contact still to come: what "the next planned contact" of a customer means.
PENDING_STATUSES = (NotificationLog.Status.PLANNED, NotificationLog.Status.DEFERRED)


@dataclass
class MessageEntry:
    """One contact as the timeline shows it (already masked when the viewer may not see personal data)."""

    log: NotificationLog
    at: dt.datetime
    channel: str
    kind: str
    status: str
    reason: str
    customer_local: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    loan_refs: list[str]
    destination: str
    subject: str
    body: str
    last_error: str
    admin_url: str = ""
    audit_events: list[Any] = field(default_factory=list)
    # The chain of a failed message and the next channel tried (notifications.notices.plan_fallbacks).
    fallback_of: int | None = None
    fallback_id: int | None = None


def messages_of(*, customer: Customer | None = None, loan: Loan | None = None) -> QuerySet[NotificationLog]:
    """The contacts of ``customer`` across all their loans, or those that covered an instalment of ``loan``
    (through NotificationItem), newest first. Raises ValueError when neither is given."""
    if loan is not None:
        qs = NotificationLog.objects.filter(items__installment__loan=loan).distinct()
    elif customer is not None:
        qs = NotificationLog.objects.filter(customer=customer)
    else:
        raise ValueError("Give a customer or a loan.")
    return qs.order_by("-scheduled_for", "-id")


def next_planned_contact(customer: Customer, now: dt.datetime) -> NotificationLog | None:
    """The customer's next contact still to be sent (planned or deferred) from ``now`` on."""
    return (
        NotificationLog.objects.filter(customer=customer, status__in=PENDING_STATUSES, scheduled_for__gte=now)
        .order_by("scheduled_for", "id")
        .first()
    )


def label_of(choices, code: str) -> str:
    try:
        return str(choices(code).label)
    except ValueError:
        return code


def _chain_link(events: list, action: str, key: str) -> int | None:
    """The contact id ``key`` names in the first ``action`` event about a contact (None without one)."""
    for event in events:
        if event.action == action and isinstance(event.after, dict) and event.after.get(key):
            return event.after[key]
    return None


def _change_url_pattern() -> str | None:
    try:
        return reverse("admin:notifications_notificationlog_change", args=[0])
    except NoReverseMatch:
        return None


def message_entries(
    logs: list[NotificationLog],
    customer: Customer,
    *,
    masker: Masker,
    events: dict[str, list] | None = None,
) -> list[MessageEntry]:
    """Rows for ``logs`` of ``customer``: labels in the active language, the customer's local time of each,
    personal data as ``masker`` shows it, and the audit events about each (``events``: by log id as a string,
    gathered by the caller in one query for the whole page)."""
    zone = customer.zone
    pii = known_of(customer)
    events = events or {}
    change_url = _change_url_pattern()

    def masked(text: str) -> str:
        return masker.text(text, **pii)

    rows = []
    for log in logs:
        about = events.get(str(log.pk), [])
        rows.append(
            MessageEntry(
                log=log,
                at=log.scheduled_for,
                channel=label_of(Channel, log.channel),
                kind=label_of(Kind, log.kind),
                status=label_of(NotificationLog.Status, log.status),
                reason=label_of(NotificationLog.Reason, log.reason) if log.reason else "",
                customer_local=log.scheduled_for.astimezone(zone),
                sent_at=log.sent_at,
                delivered_at=log.delivered_at,
                loan_refs=[r.strip() for r in log.loan_refs.split(",") if r.strip()],
                destination=masker.destination(log.destination),
                subject=masked(log.subject),
                body=masked(log.body),
                last_error=masked(log.last_error),
                admin_url=change_url.replace("/0/", f"/{log.pk}/") if change_url else "",
                audit_events=about,
                fallback_of=_chain_link(about, "notifications.contact.planned", "fallback_of"),
                fallback_id=_chain_link(about, "notifications.contact.fell_back", "fallback_id"),
            )
        )
    return rows
