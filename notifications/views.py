"""What providers and customers call from outside: delivery receipts, inbound SMS (opt-out keywords) and the
one-click unsubscribe link of an email."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from loans.models import Customer
from loans.phones import normalize_phone

from .choices import Channel
from .consent import change_consent, reply_intent
from .inbound import read_unsubscribe_token
from .receipts import ReceiptError, apply_receipts, check_receipts, parse_receipts, parse_timestamp

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"


def expected_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def has_valid_signature(request: HttpRequest) -> bool:
    """HMAC-SHA256 of the raw body with DELIVERY_WEBHOOK_SECRET, hex, optionally written ``sha256=<hex>``."""
    secret = settings.DELIVERY_WEBHOOK_SECRET
    if not secret:
        return False
    given = request.headers.get(SIGNATURE_HEADER, "").strip()
    if given.lower().startswith("sha256="):
        given = given[len("sha256=") :]
    if not given:
        return False
    return hmac.compare_digest(
        given.lower().encode("ascii", "replace"), expected_signature(request.body, secret).encode("ascii")
    )


def _refuse_constant(name: str):
    raise ReceiptError(f"{name} is not a JSON number")


def load_receipts_json(body: bytes):
    """The body as JSON, strictly: UTF-8, no ``NaN``/``Infinity``, not nested deeper than the parser can go.
    Raises ReceiptError."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except ReceiptError:
        raise
    except RecursionError:
        raise ReceiptError("the body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ReceiptError("the body is not valid JSON") from None


def _body_size(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def read_signed_json(request: HttpRequest, what: str) -> tuple[Any, JsonResponse | None]:
    """``(payload, None)`` for a provider's call signed with DELIVERY_WEBHOOK_SECRET, else ``(None, refusal)``:
    400 for a body over ``DELIVERY_RECEIPTS_MAX_BYTES``, 403 without a valid signature, 400 for bad JSON."""
    limit = settings.DELIVERY_RECEIPTS_MAX_BYTES
    size = _body_size(request)
    if size is None or size > limit:
        logger.warning("%s refused: body of %s bytes (from %s)", what, size, request.META.get("REMOTE_ADDR"))
        return None, JsonResponse({"error": f"the body is larger than {limit} bytes"}, status=400)
    if not has_valid_signature(request):
        logger.warning(
            "%s refused: missing or bad signature (from %s)", what, request.META.get("REMOTE_ADDR")
        )
        return None, JsonResponse({"error": "invalid signature"}, status=403)
    try:
        return load_receipts_json(request.body), None
    except ReceiptError as exc:
        logger.warning("%s refused: %s", what, exc)
        return None, JsonResponse({"error": str(exc)}, status=400)


@csrf_exempt
@require_POST
def delivery_receipts(request: HttpRequest) -> JsonResponse:
    """Apply one receipt or a list of them. 403 without a valid signature; 400 with the reason for a body over
    ``DELIVERY_RECEIPTS_MAX_BYTES``, bad JSON or any bad receipt (then none is applied). Good receipts are
    applied in chunks of short transactions."""
    now = timezone.now()
    payload, refusal = read_signed_json(request, "Delivery receipts")
    if refusal is not None:
        return refusal
    try:
        receipts = parse_receipts(payload, now=now)
        check_receipts(receipts)
    except ReceiptError as exc:
        logger.warning("Delivery receipts refused: %s", exc)
        return JsonResponse({"error": str(exc)}, status=400)
    unknown = apply_receipts(receipts, now=now)
    # An unknown id is answered 200 too: the provider would otherwise retry a receipt that can never apply.
    return JsonResponse({"received": len(receipts), "unknown": unknown})


def parse_inbound(payload: Any, *, now: dt.datetime) -> list[dict]:
    """Inbound SMS: ``{"from": "+8613800138000", "text": "TD", "timestamp"?, "message_id"?}`` or a list of them.
    Raises ReceiptError naming the first bad message."""
    items = payload if isinstance(payload, list) else [payload]
    messages = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReceiptError(f"message {n}: expected an object")
        sender, text, message_id = item.get("from"), item.get("text"), item.get("message_id") or ""
        if not isinstance(sender, str) or not sender.strip() or len(sender) > 32:
            raise ReceiptError(f"message {n}: from is required (a phone number)")
        if not isinstance(text, str) or len(text) > 1600:
            raise ReceiptError(f"message {n}: text must be a string of at most 1600 characters")
        if not isinstance(message_id, str) or len(message_id) > 128:
            raise ReceiptError(f"message {n}: message_id must be a string of at most 128 characters")
        try:
            phone = normalize_phone(sender)
        except ValidationError:
            raise ReceiptError(f"message {n}: from is not a phone number") from None
        try:
            at = parse_timestamp(item.get("timestamp"), now=now)
        except ReceiptError as exc:
            raise ReceiptError(f"message {n}: {exc}") from None
        messages.append({"phone": phone, "text": text, "message_id": message_id, "at": at})
    return messages


@csrf_exempt
@require_POST
def inbound_sms(request: HttpRequest) -> JsonResponse:
    """Replies to our SMS, signed like delivery receipts: STOP / 退订 / TD opt the sender's customers out of SMS,
    START opts them back in, at once and audited (``notifications.consent.opted_out`` / ``.opted_in``, through
    ``change_consent``, as Twilio's inbound SMS); other text is ignored.
    All or nothing; 403 without a valid signature, 400 for a bad body (naming the first bad message)."""
    now = timezone.now()
    payload, refusal = read_signed_json(request, "Inbound SMS")
    if refusal is not None:
        return refusal
    try:
        messages = parse_inbound(payload, now=now)
    except ReceiptError as exc:
        logger.warning("Inbound SMS refused: %s", exc)
        return JsonResponse({"error": str(exc)}, status=400)
    counts = {"received": len(messages), "opted_out": 0, "opted_in": 0, "ignored": 0, "unknown_sender": 0}
    with transaction.atomic():
        for msg in messages:
            opted_out = reply_intent(msg["text"])
            if opted_out is None:
                counts["ignored"] += 1
                continue
            customers = list(Customer.objects.filter(phone=msg["phone"]))
            if not customers:
                counts["unknown_sender"] += 1
                continue
            counts["opted_out" if opted_out else "opted_in"] += sum(
                change_consent(
                    customer,
                    Channel.SMS,
                    opted_out,
                    source="inbound_sms",
                    at=msg["at"] or now,
                    actor="webhook:inbound_sms",
                    details={"keyword": msg["text"].strip()[:20], "message_id": msg["message_id"]},
                )
                for customer in customers
            )
    return JsonResponse(counts)


@csrf_exempt
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """The signed unsubscribe link of an email. A POST (RFC 8058 one-click from the mail client, or the button
    of this page) opts the customer out of that channel at once, audited; a GET only shows the button, so a link
    scanner that follows it unsubscribes nobody. A link we did not sign gets 404."""
    try:
        customer_id, channel = read_unsubscribe_token(token)
        customer = Customer.objects.get(pk=customer_id)
    except (signing.BadSignature, Customer.DoesNotExist):
        raise Http404("Unknown unsubscribe link") from None
    done = False
    if request.method == "POST":
        change_consent(
            customer,
            channel,
            True,
            source="unsubscribe_link",
            at=timezone.now(),
            actor="customer:unsubscribe_link",
            details={"one_click": request.POST.get("List-Unsubscribe") == "One-Click"},
        )
        done = True
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    return TemplateResponse(
        request,
        "notifications/unsubscribe.html",
        {"done": done or customer.is_opted_out(channel), "channel": channel},
    )
