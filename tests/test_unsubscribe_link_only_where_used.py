"""The unsubscribe link is signed only for a message whose text uses it, and every SMS and email still carries its
way to opt out: an email's opt-out line always holds the link, an SMS's says which word to reply."""

from __future__ import annotations

import datetime as dt

import pytest

from notifications import rendering
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog
from notifications.planning import plan_contacts

from .factories import make_customer, make_installment, make_loan, make_tier
from .factories_reminders import SHANGHAI, local, make_rule, make_template

pytestmark = pytest.mark.django_db

DUE = dt.date(2026, 12, 1)
NOW = local(SHANGHAI, 2026, 11, 28, 10, 30)


@pytest.fixture(autouse=True)
def public_base_url(settings):
    settings.PUBLIC_BASE_URL = "https://lender.example"


@pytest.fixture
def signed(monkeypatch):
    """The customers whose unsubscribe link was signed while rendering."""
    customers: list[int] = []
    real = rendering.unsubscribe_url

    def counting(customer_id, *args, **kwargs):
        customers.append(customer_id)
        return real(customer_id, *args, **kwargs)

    monkeypatch.setattr(rendering, "unsubscribe_url", counting)
    return customers


def sent_to(channel, language, body):
    tier = make_tier()
    make_rule(tier, -3, channel)
    make_template("pre_due", channel, language, body=body)
    customer = make_customer(tier=tier, language=language)
    make_installment(make_loan(customer), due_date=DUE)
    plan_contacts(NOW)
    dispatch_due(NOW)
    [log] = NotificationLog.objects.filter(customer=customer)
    assert log.status == "sent"
    return customer, log


def test_it_signs_no_link_for_an_sms_that_does_not_use_it_and_still_appends_the_opt_out_line(signed):
    _customer, log = sent_to("sms", "en", "{amount_due} due {due_date}.")
    assert signed == []
    assert log.body == "500.00 due 2026-12-01.\nReply STOP to opt out"


def test_it_signs_the_link_for_an_sms_whose_template_uses_it(signed):
    customer, log = sent_to("sms", "en", "{amount_due} due. Stop: {unsubscribe_link}")
    assert signed == [customer.pk]
    assert "Stop: https://lender.example/webhooks/unsubscribe/" in log.body


def test_it_signs_the_link_of_every_email_through_its_opt_out_line(signed):
    customer, log = sent_to("email", "en", "{amount_due} due {due_date}.")
    assert signed == [customer.pk]
    assert log.body.split("\n")[-1].startswith("Unsubscribe: https://lender.example/webhooks/unsubscribe/")
