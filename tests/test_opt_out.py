"""Every SMS and email carries a way to opt out (Regulation F 1006.6(e)), and an inbound opt-out takes effect at once."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from backoffice.demo import seed_configuration
from core.models import AuditEvent
from loans.models import Customer
from notifications.consent import reply_intent
from notifications.dispatch import dispatch_due
from notifications.inbound import unsubscribe_url
from notifications.models import ContactPolicy, NotificationLog, ReminderTemplate
from notifications.planning import plan_contacts
from notifications.rendering import preview_template

from .factories import make_customer, make_installment, make_loan, make_tier
from .factories_reminders import SHANGHAI, local, make_rule, make_template, set_policy

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789"
DUE = dt.date(2026, 12, 1)
NOW = local(SHANGHAI, 2026, 11, 28, 10, 30)


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.DELIVERY_WEBHOOK_SECRET = SECRET
    settings.PUBLIC_BASE_URL = "https://lender.example"


def debtor(tier=None, **kwargs):
    customer = make_customer(tier=tier or make_tier(), **kwargs)
    make_installment(make_loan(customer), due_date=DUE)
    return customer


def post_inbound(client, payload, *, secret=SECRET):
    body = json.dumps(payload).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/inbound-sms/",
        data=body,
        content_type="application/json",
        headers={"X-Signature": signature},
    )


# --- the line in every message ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "language", "line"),
    [
        ("sms", "zh-hans", "回复TD退订"),
        ("sms", "en", "Reply STOP to opt out"),
        ("email", "zh-hans", "退订：https://lender.example/webhooks/unsubscribe/"),
        ("email", "en", "Unsubscribe: https://lender.example/webhooks/unsubscribe/"),
    ],
)
def test_a_template_without_the_opt_out_line_gets_it_appended_when_sent(channel, language, line):
    tier = make_tier()
    make_rule(tier, -3, channel)
    make_template("pre_due", channel, language, body="{customer_name}: {amount_due} due {due_date}.")
    customer = debtor(tier, language=language)

    plan_contacts(NOW)
    dispatch_due(NOW)

    [log] = NotificationLog.objects.filter(customer=customer)
    assert log.status == "sent"
    first, last = log.body.split("\n")
    assert first == f"{customer.name}: 500.00 due 2026-12-01."
    assert last.startswith(line)


def test_a_push_carries_no_opt_out_line():
    template = make_template("pre_due", "push", "en", body="{amount_due} due")
    assert preview_template(template, debtor(language="en"), NOW)["body"] == "500.00 due"


def test_a_template_that_carries_the_line_does_not_get_it_twice():
    template = make_template("pre_due", "sms", "en", body="{amount_due} due. Reply STOP to opt out")
    body = preview_template(template, debtor(language="en"), NOW)["body"]
    assert body == "500.00 due. Reply STOP to opt out"


def test_the_policy_configures_the_line_and_refuses_one_without_a_way_out():
    set_policy(sms_opt_out_line_en="Text STOP to end")
    template = make_template("pre_due", "sms", "en", body="{amount_due} due")
    assert preview_template(template, debtor(language="en"), NOW)["body"] == "500.00 due\nText STOP to end"

    policy = ContactPolicy.get()
    policy.sms_opt_out_line_zh_hans = " "
    policy.email_opt_out_line_en = "Write to us to unsubscribe"
    with pytest.raises(ValidationError) as caught:
        policy.full_clean()
    assert set(caught.value.message_dict) == {"sms_opt_out_line_zh_hans", "email_opt_out_line_en"}


def test_the_demo_templates_carry_the_opt_out_line_in_both_languages():
    seed_configuration()
    policy = ContactPolicy.get()
    for template in ReminderTemplate.objects.exclude(channel="push"):
        assert policy.opt_out_line(template.channel, template.language) in template.body, template
    customer = debtor(language="en")
    for template in ReminderTemplate.objects.filter(kind="pre_due").exclude(channel="push"):
        body = preview_template(template, customer, NOW)["body"]
        line = policy.opt_out_line(template.channel, template.language).split("{")[0]
        assert body.count(line) == 1, template


# --- email: RFC 8058 one-click unsubscribe ---------------------------------------------------------------------
def test_an_email_carries_the_one_click_unsubscribe_headers(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFICATION_BACKENDS = {
        **settings.NOTIFICATION_BACKENDS,
        "email": "notifications.channels.EmailBackend",
    }
    tier = make_tier(channel_order="email,sms")
    make_rule(tier, -3, "email")
    make_template("pre_due", "email", "en", subject="Due soon", body="{amount_due} due")
    customer = debtor(tier, language="en")

    plan_contacts(NOW)
    dispatch_due(NOW)

    [email] = mail.outbox
    link = unsubscribe_url(customer.pk)
    assert email.extra_headers["List-Unsubscribe"] == f"<{link}>"
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.body == f"500.00 due\nUnsubscribe: {link}"


def test_the_one_click_post_unsubscribes_at_once_and_is_audited(client):
    customer = debtor()
    link = unsubscribe_url(customer.pk)
    path = link.removeprefix("https://lender.example")

    page = client.get(path)
    customer.refresh_from_db()
    assert page.status_code == 200 and not customer.opt_out_email  # a link scanner unsubscribes nobody

    response = client.post(path, {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.opt_out_email and not customer.opt_out_sms
    event = AuditEvent.objects.get(action="notifications.consent.opted_out")
    assert event.object_id == str(customer.pk)
    assert event.before == {"opt_out_email": False}
    assert event.after["opt_out_email"] is True and event.after["source"] == "unsubscribe_link"
    assert event.after["one_click"] is True
    client.post(path, {"List-Unsubscribe": "One-Click"})  # again: nothing more to record
    assert AuditEvent.objects.filter(action__startswith="notifications.consent.").count() == 1


def test_a_link_we_did_not_sign_changes_nothing(client):
    customer = debtor()
    path = unsubscribe_url(customer.pk).removeprefix("https://lender.example")
    forged = path.replace(f"/{path.split('/')[-2]}/", f"/{path.split('/')[-2][:-3]}abc/")

    assert client.post(forged).status_code == 404
    customer.refresh_from_db()
    assert not customer.opt_out_email
    assert not AuditEvent.objects.filter(action__startswith="notifications.consent.").exists()


# --- SMS: reply keywords ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("STOP", True),
        ("stop", True),
        (" TD ", True),
        ("td", True),
        ("退订", True),
        ("退订。", True),
        ("START", False),
        ("Please stop calling me at work", None),
        ("好的", None),
    ],
)
def test_it_reads_the_reply_keywords(text, intent):
    assert reply_intent(text) is intent


@pytest.mark.parametrize("keyword", ["STOP", "退订", "TD"])
def test_an_inbound_stop_opts_the_customer_out_of_sms_at_once(client, keyword):
    tier = make_tier(channel_order="sms")
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customer = debtor(tier)
    plan_contacts(NOW)

    response = post_inbound(client, {"from": customer.phone, "text": keyword, "message_id": "in-1"})

    assert response.status_code == 200 and response.json()["opted_out"] == 1
    customer.refresh_from_db()
    assert customer.opt_out_sms
    event = AuditEvent.objects.get(action="notifications.consent.opted_out")
    assert event.after["opt_out_sms"] is True and event.after["source"] == "inbound_sms"
    assert event.after["keyword"] == keyword and event.after["message_id"] == "in-1"
    dispatch_due(NOW)
    [log] = NotificationLog.objects.filter(customer=customer)
    assert (log.status, log.reason) == ("suppressed", "opted_out")


def test_start_opts_back_in_and_a_number_written_locally_is_recognised(client):
    customer = debtor(opt_out_sms=True)
    local_number = customer.phone.removeprefix("+86")

    response = post_inbound(
        client, [{"from": local_number, "text": "START"}, {"from": "+8613900000000", "text": "STOP"}]
    )

    assert response.status_code == 200
    assert response.json() == {
        "received": 2,
        "opted_out": 0,
        "opted_in": 1,
        "ignored": 0,
        "unknown_sender": 1,
    }
    customer.refresh_from_db()
    assert not customer.opt_out_sms
    event = AuditEvent.objects.get(action="notifications.consent.opted_in")
    assert event.before == {"opt_out_sms": True} and event.after["opt_out_sms"] is False


def test_an_unsigned_or_badly_signed_inbound_message_changes_nothing(client):
    customer = debtor()
    body = json.dumps({"from": customer.phone, "text": "STOP"})

    unsigned = client.post("/webhooks/inbound-sms/", data=body, content_type="application/json")
    forged = post_inbound(client, {"from": customer.phone, "text": "STOP"}, secret="not-the-secret")

    assert unsigned.status_code == 403 and forged.status_code == 403
    customer.refresh_from_db()
    assert not customer.opt_out_sms
    assert not AuditEvent.objects.filter(action__startswith="notifications.consent.").exists()


def test_a_bad_inbound_body_is_refused_whole(client):
    customer = debtor()

    response = post_inbound(
        client, [{"from": customer.phone, "text": "STOP"}, {"from": "12ab", "text": "STOP"}]
    )

    assert response.status_code == 400 and "from is not a phone number" in response.json()["error"]
    assert not Customer.objects.filter(opt_out_sms=True).exists()


def test_the_unsubscribe_link_of_a_customer_is_the_same_in_every_message():
    import time_machine

    customer = debtor()
    with time_machine.travel(NOW):
        first = unsubscribe_url(customer.pk)
    with time_machine.travel(NOW + dt.timedelta(days=40)):
        assert unsubscribe_url(customer.pk) == first
