"""Rendering: a message's text from its template, the customer and the instalments it names.

``render_message`` is what the dispatcher sends and ``preview_template`` what the admin preview shows (one
function for both); ``build_context`` the placeholders, ``pay_links`` the ``{pay_link}`` of a message.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.conf import settings

from loans.models import CreditTier, Customer, Installment, Loan
from loans.schedule import grace_days_of, grace_end_date

from .choices import Channel, Kind
from .inbound import unsubscribe_url
from .models import ContactPolicy, NotificationLog, ReminderTemplate
from .templating import placeholders_of, render, sms_segments

LOAN_LINE = {
    "en": "{loan_ref}: {amount} {currency} due {due_date}",
    "zh-hans": "{loan_ref}：{amount} {currency}，到期日 {due_date}",
}


def template_index() -> dict[tuple[str, str, str], ReminderTemplate]:
    """Every template by (kind, channel, language), as ``gates.pick_template`` chooses among them."""
    return {(t.kind, t.channel, t.language): t for t in ReminderTemplate.objects.all()}


def build_context(
    customer: Customer,
    installments: list[Installment],
    *,
    tier,
    now: dt.datetime,
    language: str,
    unsubscribe_link: bool = True,
) -> dict:
    """The placeholder values for a message about ``installments`` (with their loans) as of ``now``. The
    ``{unsubscribe_link}`` (a signed token and a URL reversed) only with ``unsubscribe_link``: a text that does not
    use it need not pay for it."""
    local_today = customer.local_now(now).date()
    due_date = min((i.due_date for i in installments), default=None)
    currency = installments[0].loan.currency if installments else settings.DEFAULT_CURRENCY
    amount = sum((i.outstanding for i in installments), Decimal("0.00"))
    loan_refs: list[str] = []
    for inst in installments:
        if inst.loan.ref not in loan_refs:
            loan_refs.append(inst.loan.ref)
    line = LOAN_LINE.get(language, LOAN_LINE["en"])
    loans = "\n".join(
        line.format(
            loan_ref=i.loan.ref,
            amount=i.outstanding,
            currency=i.loan.currency,
            due_date=i.due_date.isoformat(),
        )
        for i in installments
    )
    return {
        "customer_name": customer.name,
        "amount_due": amount,
        "currency": currency,
        "due_date": due_date.isoformat() if due_date else "",
        "days_until_due": max((due_date - local_today).days, 0) if due_date else "",
        "days_past_due": max((local_today - due_date).days, 0) if due_date else "",
        "grace_end_date": grace_end_date(due_date, grace_days_of(tier)).isoformat() if due_date else "",
        "loan_ref": ", ".join(loan_refs),
        "how_to_pay": settings.HOW_TO_PAY,
        "pay_link": pay_links(loan_refs),
        "unsubscribe_link": unsubscribe_url(customer.pk) if unsubscribe_link else "",
        "loans": loans,
    }


def pay_links(loan_refs: list[str]) -> str:
    """The ``{pay_link}`` of a message: each loan's payment page from ``settings.PAY_LINK_URL`` (its ``{loan_ref}``
    URL-quoted); one loan gives its link alone, several one ``ref: link`` line each; no pattern gives nothing."""
    pattern = settings.PAY_LINK_URL
    if not pattern or not loan_refs:
        return ""
    links = [(ref, pattern.format(loan_ref=quote(ref, safe=""))) for ref in loan_refs]
    if len(links) == 1:
        return links[0][1]
    return "".join(f"\n{ref}: {link}" for ref, link in links)


def render_template(template: ReminderTemplate, context: dict) -> tuple[str, str]:
    subject = render(template.subject, context) if template.channel != Channel.SMS else ""
    return subject, render(template.body, context)


def render_message(
    template: ReminderTemplate,
    customer: Customer,
    installments: list[Installment],
    *,
    tier,
    now: dt.datetime,
    policy: ContactPolicy | None = None,
) -> tuple[str, str]:
    """The subject and body of ``template`` for ``customer`` about ``installments`` (with their loans) as of
    ``now``: what the dispatcher sends, and what the admin preview shows (one function for both). An SMS or
    email always carries the contact policy's opt-out line of its language (Regulation F 1006.6(e)): appended on
    a line of its own when the template does not carry it already. An email's opt-out line always carries the
    ``{unsubscribe_link}`` (``ContactPolicy.clean``); the link is signed only for a text that uses it."""
    policy = policy or ContactPolicy.get()
    opt_out = policy.opt_out_line(template.channel, template.language)
    texts = (
        (template.body, opt_out)
        if template.channel == Channel.SMS
        else (template.subject, template.body, opt_out)
    )
    context = build_context(
        customer,
        installments,
        tier=tier,
        now=now,
        language=template.language,
        unsubscribe_link=any("unsubscribe_link" in placeholders_of(text or "") for text in texts),
    )
    subject, body = render_template(template, context)
    line = render(opt_out, context)
    if line and line not in body:
        body = f"{body}\n{line}" if body else line
    return subject, body


# Kinds about instalments already past due: with no message of the day to show, they name every one of them.
PAST_DUE_KINDS = (Kind.GRACE, Kind.OVERDUE, Kind.PROMISE_REMINDER)


def message_installments(customer: Customer, kind: str, channel: str, now: dt.datetime) -> tuple[list, Any]:
    """The instalments (with their loans) a ``kind`` message on ``channel`` to ``customer`` names at ``now``, and the
    tier it is rendered under, as the dispatcher takes them: the customer's contact of that kind and channel on
    their local day holding ``now`` (not yet sent, or sent) names its instalments still unpaid and not under legal
    hold, in its order. Without one, what such a message would name now: for a kind about arrears every unpaid
    instalment past due, else the instalments of the next due date (all loans due that day)."""
    zone = customer.zone
    local_day = now.astimezone(zone).date()
    day_start = dt.datetime.combine(local_day, dt.time.min, tzinfo=zone)
    day_end = dt.datetime.combine(local_day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    log = (
        NotificationLog.objects.filter(
            customer=customer,
            kind=kind,
            channel=channel,
            scheduled_for__gte=day_start,
            scheduled_for__lt=day_end,
            status__in=[*NotificationLog.PENDING_STATUSES, *NotificationLog.CONTACTED_STATUSES],
        )
        .order_by("-scheduled_for", "-id")
        .first()
    )
    tier = customer.tier
    if log is not None:
        listed = list(
            Installment.objects.filter(notification_items__notification=log)
            .select_related("loan")
            .order_by("notification_items__id")
        )
        named = [i for i in listed if i.paid_at is None and not i.loan.legal_hold]
        if named:
            return named, tier or (CreditTier.objects.filter(pk=log.tier_id).first() if log.tier_id else None)
    unpaid = list(
        Installment.objects.unpaid()
        .filter(loan__customer=customer, loan__status=Loan.Status.ACTIVE)
        .select_related("loan")
        .order_by("due_date", "loan__ref", "seq")
    )
    unpaid = [i for i in unpaid if not i.loan.legal_hold]
    past_due = [i for i in unpaid if i.due_date < local_day]
    if kind in PAST_DUE_KINDS and past_due:
        return past_due, tier
    upcoming = [i for i in unpaid if i.due_date >= local_day] or unpaid
    next_due = upcoming[0].due_date if upcoming else None
    return [i for i in upcoming if i.due_date == next_due], tier


def preview_template(template: ReminderTemplate, customer: Customer, now: dt.datetime) -> dict:
    """``template`` rendered for ``customer`` as of ``now`` exactly as the dispatcher renders it, about the
    instalments its message names (``message_installments``), as the admin preview shows it; for SMS also
    characters, segments and encoding."""
    installments, tier = message_installments(customer, template.kind, template.channel, now)
    subject, body = render_message(template, customer, installments, tier=tier, now=now)
    chars, segments, encoding = sms_segments(body)
    return {"subject": subject, "body": body, "chars": chars, "segments": segments, "encoding": encoding}
