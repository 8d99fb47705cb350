"""The delivery-receipt webhook providers call when a message they accepted was delivered or failed."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .receipts import ReceiptError, apply_receipts, check_receipts, parse_receipts

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


@csrf_exempt
@require_POST
def delivery_receipts(request: HttpRequest) -> JsonResponse:
    """Apply one receipt or a list of them. 403 without a valid signature; 400 with the reason for a body over
    ``DELIVERY_RECEIPTS_MAX_BYTES``, bad JSON or any bad receipt (then none is applied). Good receipts are
    applied in chunks of short transactions."""
    now = timezone.now()
    limit = settings.DELIVERY_RECEIPTS_MAX_BYTES
    size = _body_size(request)
    if size is None or size > limit:
        logger.warning(
            "Delivery receipts refused: body of %s bytes (from %s)", size, request.META.get("REMOTE_ADDR")
        )
        return JsonResponse({"error": f"the body is larger than {limit} bytes"}, status=400)
    if not has_valid_signature(request):
        logger.warning(
            "Delivery receipt refused: missing or bad signature (from %s)", request.META.get("REMOTE_ADDR")
        )
        return JsonResponse({"error": "invalid signature"}, status=403)
    try:
        receipts = parse_receipts(load_receipts_json(request.body), now=now)
        check_receipts(receipts)
    except ReceiptError as exc:
        logger.warning("Delivery receipts refused: %s", exc)
        return JsonResponse({"error": str(exc)}, status=400)
    unknown = apply_receipts(receipts, now=now)
    # An unknown id is answered 200 too: the provider would otherwise retry a receipt that can never apply.
    return JsonResponse({"received": len(receipts), "unknown": unknown})
