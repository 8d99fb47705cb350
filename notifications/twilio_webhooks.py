"""Twilio's own callbacks: message status (StatusCallback) and inbound SMS (a customer replying STOP).

Both are form-encoded POSTs signed with ``X-Twilio-Signature``, checked by the official ``twilio`` library's
``RequestValidator`` against the URL Twilio called (``PUBLIC_BASE_URL`` plus the path, as the backend gave it)
and ``TWILIO_AUTH_TOKEN``. A missing or wrong signature is 403 and changes nothing.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.messaging_response import MessagingResponse

from loans.models import Customer
from loans.phones import normalize_phone

from .choices import Channel
from .consent import OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS, change_consent, reply_intent, reply_keyword
from .receipts import DELIVERED, FAILED, record_delivery_receipt

logger = logging.getLogger(__name__)

STATUS_ACTOR = "webhook:twilio_status"
INBOUND_ACTOR = "webhook:twilio_inbound"
# Twilio's statuses that end a message's life: the others (queued, sending, sent, accepted...) change nothing.
FINAL_STATUSES = {"delivered": DELIVERED, "undelivered": FAILED, "failed": FAILED}
# Twilio answers its own keywords itself (and blocks our reply to a number that just sent STOP); a keyword it
# does not know (退订, TD) gets our confirmation.
TWILIO_KEYWORDS = (OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS) - {"退订", "TD"}
CONFIRMATIONS = {
    True: {
        "zh-hans": "您已退订短信提醒。回复 START 可恢复。",
        "en": "You will no longer receive SMS reminders. Reply START to receive them again.",
    },
    False: {
        "zh-hans": "您已恢复接收短信提醒。回复 TD 可退订。",
        "en": "You will receive SMS reminders again. Reply STOP to opt out.",
    },
}


def called_url(request: HttpRequest) -> str:
    """The URL Twilio signed: the public address it was given (``PUBLIC_BASE_URL``) plus the path and query,
    not whatever host a proxy in front of the application passed on."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{request.get_full_path()}" if base else request.build_absolute_uri()


def is_signed_by_twilio(request: HttpRequest) -> bool:
    token = settings.TWILIO_AUTH_TOKEN
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not token or not signature:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER, ""))
    return RequestValidator(token).validate(called_url(request), request.POST, signature, algorithm)


def _refused(request: HttpRequest) -> HttpResponse:
    logger.warning(
        "Twilio callback refused: missing or bad signature (from %s)", request.META.get("REMOTE_ADDR")
    )
    return HttpResponse("invalid signature", status=403, content_type="text/plain")


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    """A message's status: ``delivered`` marks the contact delivered; ``undelivered`` and ``failed`` mark it
    failed with Twilio's error code (and fall back to the next channel), through ``record_delivery_receipt``.
    Other statuses are acknowledged and change nothing; so is a message the product does not know."""
    if not is_signed_by_twilio(request):
        return _refused(request)
    status = FINAL_STATUSES.get(request.POST.get("MessageStatus", ""))
    sid = request.POST.get("MessageSid", "")
    if status is not None and sid:
        error = ""
        if status == FAILED:
            code = request.POST.get("ErrorCode", "")
            error = f"Twilio {request.POST['MessageStatus']}" + (f", error {code}" if code else "")
        now = timezone.now()
        record_delivery_receipt(
            provider_message_id=sid, status=status, error=error, at=now, now=now, actor=STATUS_ACTOR
        )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    """An SMS a customer sent to our number. STOP (and Twilio's other opt-out words, 退订, TD) opts every
    customer with that phone number out of SMS at once; START opts them back in (``change_consent``, audited).
    Answers TwiML: empty for Twilio's own keywords (Twilio replies to those itself), a confirmation in the
    customer's language for 退订 and TD, empty for any other message."""
    if not is_signed_by_twilio(request):
        return _refused(request)
    response = MessagingResponse()
    opted_out = reply_intent(request.POST.get("Body", ""))
    try:
        phone = normalize_phone(request.POST.get("From", ""))
    except ValidationError:
        phone = ""
    if opted_out is not None and phone:
        now = timezone.now()
        customers = list(Customer.objects.filter(phone=phone).order_by("id"))
        for customer in customers:
            change_consent(
                customer, Channel.SMS, opted_out, source="sms_reply:twilio", at=now, actor=INBOUND_ACTOR
            )
        if customers and reply_keyword(request.POST.get("Body", "")) not in TWILIO_KEYWORDS:
            texts = CONFIRMATIONS[opted_out]
            response.message(texts.get(customers[0].language, texts["en"]))
    return HttpResponse(str(response), content_type="application/xml")
