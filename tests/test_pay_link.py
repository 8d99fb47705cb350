"""How to pay: a {pay_link} per loan from PAY_LINK_URL, and no dangling label when a placeholder has no value."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog, ReminderTemplate
from notifications.planning import plan_contacts
from notifications.rendering import preview_template
from notifications.templating import render, validate_template_text

from .factories import make_customer, make_installment, make_loan, make_tier
from .factories_reminders import SHANGHAI, local, make_rule, make_template

ROOT = Path(__file__).resolve().parent.parent
DUE = dt.date(2026, 12, 1)


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        ("应还100元。还款方式：{how_to_pay}", {}, "应还100元。"),
        ("应还100元。还款方式：{how_to_pay}", {"how_to_pay": "支付宝"}, "应还100元。还款方式：支付宝"),
        ("Please pay now. How to pay: {how_to_pay}. Thank you.", {}, "Please pay now. Thank you."),
        ("Body.\n\n还款方式：{how_to_pay}\n还款链接：{pay_link}\n", {}, "Body."),
        (
            "Body.\n\n还款方式：{how_to_pay}\n还款链接：{pay_link}",
            {"pay_link": "https://pay.example/L1"},
            "Body.\n\n还款链接：https://pay.example/L1",
        ),
        ("应还{amount_due}元：{loans}。", {"amount_due": "5"}, "应还5元。"),
        (
            "Hello {customer_name}, pay {amount_due}.",
            {"customer_name": "Li", "amount_due": ""},
            "Hello Li, pay .",
        ),
    ],
)
def test_it_drops_the_label_of_a_placeholder_without_a_value(text, context, expected):
    assert render(text, context) == expected


def test_pay_link_is_a_known_placeholder_and_a_misspelt_one_is_refused():
    validate_template_text("还款链接：{pay_link}")
    with pytest.raises(ValidationError, match="pay_url"):
        validate_template_text("还款链接：{pay_url}")


@pytest.mark.django_db
def test_a_template_with_an_unknown_placeholder_cannot_be_saved():
    with pytest.raises(ValidationError):
        ReminderTemplate.objects.create(kind="pre_due", channel="sms", language="en", body="Pay at {paylink}")


def debtor(tier, refs):
    customer = make_customer(tier=tier)
    for ref in refs:
        make_installment(make_loan(customer, ref=ref), due_date=DUE, amount_due=Decimal("500.00"))
    return customer


@pytest.mark.django_db
def test_each_loan_of_a_message_gets_its_payment_link_from_the_configured_pattern(settings):
    settings.PAY_LINK_URL = "https://pay.example/{loan_ref}"
    tier = make_tier()
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans", body="应还{amount_due}{currency}。还款链接：{pay_link}")
    one, two = debtor(tier, ["L-1/A"]), debtor(tier, ["L-2", "L-3"])
    now = local(SHANGHAI, 2026, 11, 28, 10, 30)

    plan_contacts(now)
    dispatch_due(now)

    assert (
        NotificationLog.objects.get(customer=one).body
        == "应还500.00CNY。还款链接：https://pay.example/L-1%2FA\n回复TD退订"
    )
    assert NotificationLog.objects.get(customer=two).body == (
        "应还1000.00CNY。还款链接：\nL-2: https://pay.example/L-2\nL-3: https://pay.example/L-3\n回复TD退订"
    )


@pytest.mark.django_db
def test_without_a_pattern_the_message_carries_no_empty_label(settings):
    settings.PAY_LINK_URL = ""
    settings.HOW_TO_PAY = ""
    template = make_template(
        "pre_due", "sms", "zh-hans", body="应还{amount_due}{currency}。还款方式：{how_to_pay}"
    )
    customer = debtor(make_tier(), ["L-9"])

    preview = preview_template(template, customer, local(SHANGHAI, 2026, 11, 28, 10, 30))

    assert preview["body"] == "应还500.00CNY。\n回复TD退订"


@pytest.mark.django_db
def test_the_demo_templates_carry_the_payment_link_in_both_languages(settings):
    from backoffice.demo import seed_configuration

    settings.PAY_LINK_URL = "https://pay.example/{loan_ref}"
    settings.HOW_TO_PAY = ""
    seed_configuration()
    for language in ("zh-hans", "en"):
        for kind in ("pre_due", "due_today", "grace", "overdue", "autodebit_failed", "promise_reminder"):
            for channel in ("sms", "email"):
                body = ReminderTemplate.objects.get(kind=kind, channel=channel, language=language).body
                assert "{pay_link}" in body, (kind, channel, language)
    customer = debtor(make_tier(), ["L-7"])
    now = local(SHANGHAI, 2026, 11, 28, 10, 30)
    for language, label in (("zh-hans", "还款方式："), ("en", "How to pay:")):
        template = ReminderTemplate.objects.get(kind="pre_due", channel="email", language=language)
        body = preview_template(template, customer, now)["body"]
        assert "https://pay.example/L-7" in body and label not in body


def run_check(**env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("PAY_LINK_URL",)}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_pay_link_pattern_with_an_unknown_placeholder_refuses_to_start():
    result = run_check(PAY_LINK_URL="https://pay.example/{loan_id}")
    assert result.returncode != 0
    assert "PAY_LINK_URL" in result.stderr and "{loan_id}" in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("pattern", ["", "https://pay.example/{loan_ref}"])
def test_the_demo_sms_reads_whole_with_and_without_a_payment_link(settings, pattern):
    from backoffice.demo import seed_configuration

    settings.PAY_LINK_URL = pattern
    seed_configuration()
    customer = debtor(make_tier(), ["L-5"])
    now = local(SHANGHAI, 2026, 11, 28, 10, 30)
    for language, label in (("zh-hans", "还款链接："), ("en", "Pay here:")):
        template = ReminderTemplate.objects.get(kind="pre_due", channel="sms", language=language)
        body = preview_template(template, customer, now)["body"]
        assert body.splitlines()[-2].endswith(("。", ".", "https://pay.example/L-5"))
        assert body.splitlines()[-1] in ("回复TD退订", "Reply STOP to opt out")
        assert (label in body) == bool(pattern)
        assert ".Pay" not in body
