"""What an email provider reports after sending, through django-anymail's tracking webhooks.

Each ESP's webhook (``/webhooks/anymail/<esp>/tracking/``, verified by anymail: the ESP's signature where it has
one, ``ANYMAIL_WEBHOOK_SECRET`` basic auth otherwise) becomes normalized events on anymail's ``tracking``
signal; ``on_tracking_event`` applies them:

- ``delivered``: the contact becomes delivered (``record_delivery_receipt``);
- ``bounced`` (a permanent failure; anymail reports a soft bounce as ``deferred``) and ``rejected`` for a
  bad address: the address is forgotten (``forget_destinations``), the contact becomes failed and falls back
  to the next channel of the tier;
- ``complained`` (marked as spam): the customer is opted out of email (``change_consent``), the contact
  becomes failed and falls back;
- ``unsubscribed`` (the ESP's own unsubscribe link): the customer is opted out of email;
- anything else (queued, sent, deferred, opened, clicked) changes nothing.
"""

from __future__ import annotations

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from loans.models import Customer

from .choices import Channel
from .consent import change_consent
from .destinations import DeadDestination, forget_destinations
from .receipts import DELIVERED, FAILED, MAX_ERROR_LENGTH, ReceiptError, record_delivery_receipt

# A rejection for these reasons says the address itself will not take mail.
DEAD_ADDRESS_REASONS = {RejectReason.BOUNCED, RejectReason.INVALID}


def on_tracking_event(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """Receiver of ``anymail.signals.tracking``: apply one normalized ESP event (see the module docstring),
    in one transaction."""
    actor = f"webhook:anymail:{esp_name.lower()}"
    now = timezone.now()
    at = event.timestamp or now
    kind = event.event_type
    with transaction.atomic():
        if kind == EventType.DELIVERED:
            _receipt(event, DELIVERED, at=at, now=now, actor=actor)
        elif kind in (EventType.BOUNCED, EventType.REJECTED):
            why = _why(esp_name, event)
            if kind == EventType.BOUNCED or event.reject_reason in DEAD_ADDRESS_REASONS:
                forget_destinations(
                    [DeadDestination(Channel.EMAIL, event.recipient or "", why)], at=at, actor=actor
                )
            _receipt(event, FAILED, at=at, now=now, actor=actor, error=why)
        elif kind == EventType.COMPLAINED:
            _opt_out(event.recipient, source=f"email_complaint:{esp_name.lower()}", at=at, actor=actor)
            _receipt(event, FAILED, at=at, now=now, actor=actor, error=_why(esp_name, event))
        elif kind == EventType.UNSUBSCRIBED:
            _opt_out(event.recipient, source=f"email_unsubscribe:{esp_name.lower()}", at=at, actor=actor)


def _why(esp_name: str, event: AnymailTrackingEvent) -> str:
    detail = event.mta_response or event.description or event.reject_reason or ""
    return (f"{esp_name} {event.event_type}" + (f": {detail}" if detail else ""))[:MAX_ERROR_LENGTH]


def _receipt(event: AnymailTrackingEvent, status: str, *, at, now, actor: str, error: str = "") -> None:
    """The event as a receipt, at the ESP's time; a time before our own record of the send (the two clocks
    differ by a little) is taken as now rather than refused, or the ESP would retry the event for ever."""
    kwargs = {
        "provider_message_id": event.message_id or "",
        "status": status,
        "error": error,
        "actor": actor,
        "now": now,
        "also_after_delivery": status == FAILED,
    }
    try:
        with transaction.atomic():
            record_delivery_receipt(at=at, **kwargs)
    except ReceiptError:
        record_delivery_receipt(at=now, **kwargs)


def _opt_out(address: str | None, *, source: str, at, actor: str) -> None:
    if not address:
        return
    for customer in (
        Customer.objects.annotate(match=Lower("email")).filter(match=address.lower()).order_by("id")
    ):
        change_consent(customer, Channel.EMAIL, True, source=source, at=at, actor=actor)
