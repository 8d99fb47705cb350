"""A customer's consent per channel, changed by the customer (an SMS reply, a spam complaint, an unsubscribe).

One service changes it, whatever the source, so every change is applied and audited the same way; the
dispatcher reads the opt-out at send time, so a change takes effect for every contact not yet sent.
"""

from __future__ import annotations

import datetime as dt
import re

from django.db import transaction
from django.utils import timezone

from core.audit import log_event
from loans.models import Customer

from .choices import Channel

# Twilio's own opt-out and opt-in keywords (it answers them itself), and the Chinese ones
# (退订 "unsubscribe", TD its pinyin initials; the usual reply keywords of Chinese SMS).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "退订", "TD"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES", "OPTIN"})
_EDGES = re.compile(r"^[\s\W_]+|[\s\W_]+$")


def reply_keyword(body: str) -> str:
    """An inbound SMS as a keyword: the whole message, upper case, without surrounding spaces and punctuation."""
    return _EDGES.sub("", body or "").upper()


def reply_intent(body: str) -> bool | None:
    """What an inbound SMS asks: True to opt out, False to opt back in, None for anything else. The whole
    message is the keyword (any case, surrounding spaces and punctuation ignored), as carriers read it."""
    word = reply_keyword(body)
    if word in OPT_OUT_KEYWORDS:
        return True
    if word in OPT_IN_KEYWORDS:
        return False
    return None


def change_consent(
    customer: Customer,
    channel: str,
    opted_out: bool,
    *,
    source: str,
    at: dt.datetime,
    actor: str,
    details: dict | None = None,
) -> bool:
    """Set ``customer``'s opt-out of ``channel`` (sms, email, push, call) to ``opted_out``.

    Effects: the customer's ``opt_out_<channel>`` flag, and the audit event ``notifications.consent.opted_out``
    or ``.opted_in`` on the customer with the ``source`` (``sms_reply:twilio``, ``email_complaint:ses``...) in
    the same transaction (``details``, such as the reply keyword, go into the event). Setting the flag it
    already has changes and writes nothing. Returns whether it changed. Raises ValueError for an unknown channel.
    """
    if channel not in Channel.values:
        raise ValueError(f"Unknown channel {channel!r}.")
    field = f"opt_out_{channel}"
    with transaction.atomic():
        current = (
            Customer.objects.select_for_update().filter(pk=customer.pk).values_list(field, flat=True).get()
        )
        if current == opted_out:
            setattr(customer, field, opted_out)
            return False
        Customer.objects.filter(pk=customer.pk).update(**{field: opted_out, "updated_at": timezone.now()})
        setattr(customer, field, opted_out)
        log_event(
            f"notifications.consent.{'opted_out' if opted_out else 'opted_in'}",
            actor=actor,
            obj=customer,
            at=at,
            before={field: current},
            after={field: opted_out, "channel": channel, "source": source, **(details or {})},
        )
    return True
