"""Realistic demo data for ``manage.py seed_demo`` (idempotent: a second run adds nothing), composed of each
app's part.

Tiers A to D and the loan book (``loans.demo``), reminder templates in Chinese and English for every kind and
messaging channel, reminder rules per tier, the contact policy, the collections ladders, agencies and weeks of
worked cases (``debt_collection.demo``), champion/challenger tests on tiers B and C with months of simulated
payments by arm (``strategy.demo``), and one demo user per role.

Everything random comes from ``random.Random(42)``: the same run on the same day gives the same rows. Rows
that exist (by reference) are left as they are; dates are relative to the day of the first run.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from debt_collection import demo as collections_demo
from loans import demo as loans_demo
from loans.models import CreditTier
from notifications.models import ContactPolicy, ReminderRule, ReminderTemplate
from strategy import demo as strategy_demo
from strategy.outcomes import run_outcomes

from . import roles

# (offset_days, channel, kind, local send time): low risk gets few messages, high risk more and earlier.
RULES = {
    "A": [(-3, "sms", "pre_due", "10:00"), (0, "push", "due_today", "09:00"), (3, "push", "grace", "10:00")],
    "B": [
        (-3, "sms", "pre_due", "10:00"),
        (-1, "push", "pre_due", "18:00"),
        (0, "sms", "due_today", "09:00"),
        (2, "sms", "grace", "10:00"),
    ],
    "C": [
        (-7, "email", "pre_due", "10:00"),
        (-3, "sms", "pre_due", "10:00"),
        (-1, "push", "pre_due", "18:00"),
        (0, "sms", "due_today", "09:00"),
        (0, "push", "due_today", "15:00"),
        (1, "sms", "grace", "10:00"),
        (2, "push", "grace", "10:00"),
    ],
    "D": [
        (-7, "sms", "pre_due", "10:00"),
        (-3, "sms", "pre_due", "10:00"),
        (-1, "sms", "pre_due", "10:00"),
        (-1, "push", "pre_due", "18:00"),
        (0, "sms", "due_today", "09:00"),
        (0, "push", "due_today", "15:00"),
        (1, "sms", "grace", "10:00"),
        (2, "sms", "grace", "10:00"),
        (2, "push", "grace", "16:00"),
    ],
}


HOW = {"zh-hans": "还款方式：{how_to_pay}", "en": "How to pay: {how_to_pay}"}
# The loan's payment page (PAY_LINK_URL); without a pattern or a value the line is left out of the message.
PAY = {"zh-hans": "还款链接：{pay_link}", "en": "Pay here: {pay_link}"}

# kind -> language -> (subject, body). The sms text is the body alone; email and push add the subject.
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "pre_due": {
        "zh-hans": (
            "还款提醒：{due_date} 到期",
            "{customer_name}您好，您的借款将于{due_date}（{days_until_due}天后）到期，应还{amount_due}{currency}：{loans}。",
        ),
        "en": (
            "Repayment due on {due_date}",
            "Hello {customer_name}, {amount_due} {currency} is due on {due_date} (in {days_until_due} days): {loans}.",
        ),
    },
    "due_today": {
        "zh-hans": (
            "今日到期：{amount_due}{currency}",
            "{customer_name}您好，今天（{due_date}）是还款日，应还{amount_due}{currency}：{loans}。",
        ),
        "en": (
            "Due today: {amount_due} {currency}",
            "Hello {customer_name}, today ({due_date}) {amount_due} {currency} is due: {loans}.",
        ),
    },
    "grace": {
        "zh-hans": (
            "还款宽限期提醒",
            "{customer_name}您好，您{due_date}到期的{amount_due}{currency}尚未结清，请于{grace_end_date}前还款，以免逾期：{loans}。",
        ),
        "en": (
            "Payment still open: please pay by {grace_end_date}",
            "Hello {customer_name}, {amount_due} {currency} due on {due_date} is still open. Please pay by {grace_end_date} "
            "to avoid it becoming overdue: {loans}.",
        ),
    },
    "overdue": {
        "zh-hans": (
            "逾期通知：已逾期{days_past_due}天",
            "{customer_name}您好，您的借款已逾期{days_past_due}天，应还{amount_due}{currency}，请尽快还款：{loans}。",
        ),
        "en": (
            "Overdue for {days_past_due} days",
            "Hello {customer_name}, your repayment is {days_past_due} days overdue: {amount_due} {currency}. Please pay now: {loans}.",
        ),
    },
    "autodebit_failed": {
        "zh-hans": (
            "自动扣款未成功",
            "{customer_name}您好，借款{loan_ref}今日自动扣款{amount_due}{currency}未成功，请检查银行卡余额或手动还款。",
        ),
        "en": (
            "Auto-debit did not go through",
            "Hello {customer_name}, today's auto-debit of {amount_due} {currency} for loan {loan_ref} failed. "
            "Please check your card or pay by hand.",
        ),
    },
    "promise_reminder": {
        "zh-hans": (
            "还款承诺提醒",
            "{customer_name}您好，您承诺于{due_date}前偿还借款{loan_ref}的{amount_due}{currency}，请按时还款。",
        ),
        "en": (
            "Your promise to pay",
            "Hello {customer_name}, as promised, please pay {amount_due} {currency} for loan {loan_ref} by {due_date}.",
        ),
    },
}


DEMO_USERS = [
    # username, group, password, superuser
    ("operations", roles.OPERATIONS, "demo-operations-2026", False),
    ("collector", roles.COLLECTOR, "demo-collector-2026", False),
    ("compliance", roles.COMPLIANCE_OFFICER, "demo-compliance-2026", False),
    ("admin", roles.ADMINISTRATOR, "demo-admin-2026", True),
]


def seed_configuration() -> dict[str, int]:
    """Tiers, templates, rules and the contact policy (update_or_create: the demo texts win)."""
    counts = {"tiers": loans_demo.seed_tiers(), "templates": 0, "rules": 0}
    policy = ContactPolicy.get()
    for kind, languages in TEXTS.items():
        for language, (subject, body) in languages.items():
            for channel in ("sms", "email", "push"):
                text = body
                # SMS and email carry the policy's opt-out line (Regulation F 1006.6(e)) on a line of its own.
                if channel == "email":
                    text = "\n\n".join(
                        [body, HOW[language] + "\n" + PAY[language], policy.opt_out_line(channel, language)]
                    )
                elif channel == "sms":
                    sep = "" if language == "zh-hans" else " "
                    text = "\n".join(
                        [
                            ("【信贷】" if language == "zh-hans" else "[Lender] ")
                            + body
                            + sep
                            + PAY[language],
                            policy.opt_out_line(channel, language),
                        ]
                    )
                ReminderTemplate.objects.update_or_create(
                    kind=kind,
                    channel=channel,
                    language=language,
                    defaults={"subject": "" if channel == "sms" else subject, "body": text},
                )
                counts["templates"] += 1
    tiers = {t.code: t for t in CreditTier.objects.filter(code__in=RULES)}
    for code, rules in RULES.items():
        for offset, channel, kind, at in rules:
            ReminderRule.objects.update_or_create(
                tier=tiers[code],
                offset_days=offset,
                channel=channel,
                kind=kind,
                defaults={"send_time": dt.time.fromisoformat(at), "is_active": True},
            )
            counts["rules"] += 1
    policy.holiday_country = policy.holiday_country or "CN"
    policy.save()
    return counts


def seed_users() -> list[tuple[str, str, str]]:
    """One user per role; their passwords are (re)set to the demo ones printed by the command."""
    User = get_user_model()
    rows = []
    for username, group_name, password, superuser in DEMO_USERS:
        user, _created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@lender.example"}
        )
        user.is_staff = True
        user.is_superuser = superuser
        user.set_password(password)
        user.save()
        group = Group.objects.filter(name=group_name).first()
        if group:
            user.groups.add(group)
        rows.append((username, password, group_name))
    return rows


def seed(today: dt.date | None = None, stdout=None) -> dict[str, Any]:
    """Seed everything (idempotent). Returns counts and the demo credentials."""
    today = today or timezone.localdate()
    rnd = random.Random(42)
    with transaction.atomic():
        roles.sync_roles()
        config = seed_configuration()
        book = loans_demo.seed_book(today, rnd)
        users = seed_users()
    with transaction.atomic():
        # Before the collections' history, which works the simulated customers' late payments as cases too.
        others = {"strategy.demo": strategy_demo.seed(today, random.Random(19))}
    others["debt_collection.demo"] = collections_demo.seed(stdout=stdout, today=today)
    others["strategy.outcomes"] = run_outcomes(timezone.make_aware(dt.datetime.combine(today, dt.time(6))))
    return {"configuration": config, "book": book, "others": others, "users": users}
