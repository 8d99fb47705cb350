"""The one-click unsubscribe link of an email (RFC 8058): a signed token naming the customer and the channel.
What it (and an inbound SMS keyword) changes goes through ``notifications.consent.change_consent``."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

UNSUBSCRIBE_SALT = "notifications.unsubscribe"


def unsubscribe_token(customer_id: int, channel: str = "email") -> str:
    """A signed token naming the customer and channel: the same for every message (no time in it, no expiry: an
    unsubscribe link must keep working)."""
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object({"c": customer_id, "ch": channel}, compress=True)


def read_unsubscribe_token(token: str) -> tuple[int, str]:
    """``(customer_id, channel)`` of a token; raises ``signing.BadSignature`` when it was not signed by us."""
    data = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("c"), int)
        or data.get("ch") not in ("email", "sms")
    ):
        raise signing.BadSignature("not an unsubscribe token")
    return data["c"], data["ch"]


def unsubscribe_url(customer_id: int, channel: str = "email") -> str:
    """The absolute one-click unsubscribe link of a customer (``PUBLIC_BASE_URL`` + the signed path)."""
    path = reverse("notifications:unsubscribe", args=[unsubscribe_token(customer_id, channel)])
    return settings.PUBLIC_BASE_URL.rstrip("/") + path
