"""FCM HTTP v1 with a service account: google-auth mints the OAuth token at the token endpoint named in the
file (here a local server that checks the signed assertion with the account's public key), refreshes it before
it expires, and a push token FCM reports dead is cleared and the contact falls back to the next channel."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug import Response

from core.models import AuditEvent
from loans.models import Customer
from notifications import channels
from notifications.channels import FcmPushBackend
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog, OutboxMessage
from notifications.sending import OutgoingMessage, ProviderError

from .factories_reminders import (
    SHANGHAI,
    local,
    logs_of,
    pre_due_debtor,
)

pytestmark = pytest.mark.django_db

# google-auth addresses its assertion to Google's token endpoint whatever token_uri the file names.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
SEND = "/v1/projects/lender-app/messages:send"
START = dt.datetime(2026, 11, 28, 2, 5, tzinfo=dt.UTC)
Status = NotificationLog.Status


class TokenEndpoint:
    """Google's OAuth token endpoint for service accounts (JWT bearer grant), as far as google-auth uses it."""

    def __init__(self, public_key, url):
        self.public_key, self.url = public_key, url
        self.minted: list[str] = []
        self.numbers = itertools.count(1)

    def __call__(self, request):
        assert request.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        claims = jwt.decode(
            request.form["assertion"], self.public_key, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE
        )
        assert claims["iss"] == "fcm-sender@lender-app.iam.gserviceaccount.com"
        assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        token = f"ya29.minted-{next(self.numbers)}"
        self.minted.append(token)
        body = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def fcm(httpserver, settings, tmp_path):
    """A throwaway service account whose token endpoint is the local server, which also speaks FCM v1."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token_url = httpserver.url_for("/token")
    account = {
        "type": "service_account",
        "project_id": "lender-app",
        "private_key_id": "throwaway-1",
        "private_key": pem,
        "client_email": "fcm-sender@lender-app.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_url,
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    settings.FCM_CREDENTIALS_FILE = str(path)
    settings.FCM_PROJECT_ID = ""
    settings.FCM_ACCESS_TOKEN = ""
    settings.FCM_BASE_URL = httpserver.url_for("/")
    settings.PROVIDER_TIMEOUT_SECONDS = 2
    endpoint = TokenEndpoint(key.public_key(), token_url)
    httpserver.expect_request("/token", method="POST").respond_with_handler(endpoint)
    channels._fcm_credentials.clear()
    yield httpserver, endpoint
    channels._fcm_credentials.clear()


def fcm_answers(httpserver, seen: list, *responses):
    """FCM's send endpoint answering ``responses`` in turn (a dict is a success body, a tuple (status, body)
    an error); ``seen`` gets each request's bearer token."""
    answers = iter(responses)

    def handler(request):
        seen.append(request.headers["Authorization"].removeprefix("Bearer "))
        answer = next(answers)
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return Response(json.dumps(body), status=status, content_type="application/json")

    httpserver.expect_request(SEND, method="POST").respond_with_handler(handler)


def push(token="device-token-1") -> OutgoingMessage:
    return OutgoingMessage("push", token, "Repayment due", "500.00 CNY due on 2026-12-01", "key-1")


def fcm_error(code, status, error_code=None, field=None, message=""):
    details = []
    if error_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        )
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    return (code, {"error": {"code": code, "message": message, "status": status, "details": details}})


def test_it_sends_with_a_token_minted_from_the_service_account(fcm):
    server, endpoint = fcm
    seen: list[str] = []
    fcm_answers(
        server,
        seen,
        {"name": "projects/lender-app/messages/0:1"},
        {"name": "projects/lender-app/messages/0:2"},
    )

    with time_machine.travel(START, tick=False):
        backend = FcmPushBackend()
        first = backend.send(push())
        second = FcmPushBackend().send(push("device-token-2"))

    assert (first.provider_message_id, second.provider_message_id) == (
        "projects/lender-app/messages/0:1",
        "projects/lender-app/messages/0:2",
    )
    assert backend.project_id == "lender-app"  # from the file
    assert endpoint.minted == ["ya29.minted-1"]  # one token for both sends
    assert seen == ["ya29.minted-1", "ya29.minted-1"]


def test_the_token_is_refreshed_before_it_expires(fcm):
    server, endpoint = fcm
    seen: list[str] = []
    fcm_answers(server, seen, *[{"name": f"projects/lender-app/messages/0:{n}"} for n in range(3)])

    with time_machine.travel(START, tick=False) as clock:
        FcmPushBackend().send(push())
        clock.shift(dt.timedelta(minutes=50))  # still ten minutes left: kept
        FcmPushBackend().send(push())
        clock.shift(dt.timedelta(minutes=7))  # three minutes left: minted again before sending
        FcmPushBackend().send(push())

    assert endpoint.minted == ["ya29.minted-1", "ya29.minted-2"]
    assert seen == ["ya29.minted-1", "ya29.minted-1", "ya29.minted-2"]


def test_a_token_fcm_refuses_is_minted_again_and_the_push_retried_once(fcm):
    server, endpoint = fcm
    seen: list[str] = []
    fcm_answers(server, seen, fcm_error(401, "UNAUTHENTICATED"), {"name": "m/1"})

    with time_machine.travel(START, tick=False):
        result = FcmPushBackend().send(push())

    assert result.provider_message_id == "m/1"
    assert seen == ["ya29.minted-1", "ya29.minted-2"]


def test_an_unreachable_token_endpoint_is_a_retryable_error_and_nothing_is_sent(fcm, settings, tmp_path):
    server, _endpoint = fcm
    account = json.loads(Path(settings.FCM_CREDENTIALS_FILE).read_text())
    account["token_uri"] = "http://127.0.0.1:9/token"  # nothing listens there
    path = tmp_path / "unreachable.json"
    path.write_text(json.dumps(account))
    settings.FCM_CREDENTIALS_FILE = str(path)

    with pytest.raises(ProviderError) as error:
        FcmPushBackend()

    assert error.value.retryable is True
    assert not any(request.path == SEND for request, _ in server.log)


@pytest.mark.parametrize(
    "answer, dead",
    [
        (fcm_error(404, "NOT_FOUND", "UNREGISTERED", message="Requested entity was not found."), True),
        (
            fcm_error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                field="message.token",
                message="The registration token is not a valid FCM registration token",
            ),
            True,
        ),
        (
            fcm_error(
                400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="message.data[0].value", message="bad"
            ),
            False,
        ),
        (fcm_error(404, "NOT_FOUND", message="Project not found."), False),
    ],
)
def test_only_an_error_about_the_token_itself_marks_it_dead(fcm, answer, dead):
    server, _endpoint = fcm
    fcm_answers(server, [], answer)

    with time_machine.travel(START, tick=False), pytest.raises(ProviderError) as error:
        FcmPushBackend().send(push())

    assert error.value.retryable is False
    assert error.value.dead_destination is dead


def test_an_unregistered_token_is_cleared_and_the_reminder_falls_back_to_the_next_channel(fcm, settings):
    server, _endpoint = fcm
    settings.NOTIFICATION_BACKENDS = {
        "push": "notifications.channels.FcmPushBackend",
        "email": "notifications.channels.OutboxBackend",
    }
    fcm_answers(
        server, [], fcm_error(404, "NOT_FOUND", "UNREGISTERED", message="Requested entity was not found.")
    )
    customer, _ = pre_due_debtor("push,email", push_token="dead-device")
    send_at = local(SHANGHAI, 2026, 11, 28, 10, 5)

    with time_machine.travel(send_at, tick=False):
        dispatch_due(send_at)
        dispatch_due(send_at)

    push_row, email_row = sorted(logs_of(customer), key=lambda log: log.id)
    assert (push_row.channel, push_row.status, push_row.reason) == ("push", Status.FAILED, "provider_error")
    assert "UNREGISTERED" in push_row.last_error
    assert (email_row.channel, email_row.status) == ("email", Status.SENT)
    assert OutboxMessage.objects.get().destination == customer.email
    assert Customer.objects.get(pk=customer.pk).push_token == ""
    forgotten = AuditEvent.objects.get(action="notifications.destination.forgotten")
    assert forgotten.object_id == str(customer.pk)
    assert forgotten.before == {"push_token": "dead-device"}
    assert "UNREGISTERED" in forgotten.after["reason"]
