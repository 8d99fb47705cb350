"""The delivery-receipt webhook providers call when a message they accepted was delivered or failed."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .receipts import RECEIPT_STATUSES, record_delivery_receipt

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


class BadReceipt(ValueError):
    pass


def parse_timestamp(value) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise BadReceipt("timestamp must be ISO-8601 or seconds since the epoch")
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.timezone.utc)
    raise BadReceipt(f"timestamp {value!r} is not ISO-8601")


def parse_receipts(payload) -> list[dict]:
    items = payload if isinstance(payload, list) else [payload]
    receipts = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadReceipt(f"receipt {n}: expected an object")
        pid, status, error = item.get("provider_message_id"), item.get("status"), item.get("error") or ""
        if not isinstance(pid, str) or not pid:
            raise BadReceipt(f"receipt {n}: provider_message_id is required")
        if status not in RECEIPT_STATUSES:
            raise BadReceipt(f"receipt {n}: status must be one of {', '.join(RECEIPT_STATUSES)}")
        if not isinstance(error, str):
            raise BadReceipt(f"receipt {n}: error must be a string")
        receipts.append(
            {
                "provider_message_id": pid,
                "status": status,
                "error": error,
                "at": parse_timestamp(item.get("timestamp")),
            }
        )
    return receipts


@csrf_exempt
@require_POST
def delivery_receipts(request: HttpRequest) -> JsonResponse:
    """Apply one receipt or a list of them; all or nothing. 403 without a valid signature, 400 for bad JSON."""
    if not has_valid_signature(request):
        logger.warning(
            "Delivery receipt refused: missing or bad signature (from %s)", request.META.get("REMOTE_ADDR")
        )
        return JsonResponse({"error": "invalid signature"}, status=403)
    try:
        receipts = parse_receipts(json.loads(request.body))
    except (ValueError, UnicodeDecodeError) as exc:
        message = str(exc) if isinstance(exc, BadReceipt) else "the body is not valid JSON"
        return JsonResponse({"error": message}, status=400)
    unknown = []
    with transaction.atomic():
        for receipt in receipts:
            if record_delivery_receipt(**receipt) is None:
                unknown.append(receipt["provider_message_id"])
    # An unknown id is answered 200 too: the provider would otherwise retry a receipt that can never apply.
    return JsonResponse({"received": len(receipts), "unknown": unknown})
