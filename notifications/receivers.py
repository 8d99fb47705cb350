"""Receivers of the loan book's auto-debit events: a declined debit plans the customer's ``autodebit_failed``
notice, in the transaction that records the decline (a notice that cannot be planned leaves the decline
pending for the next run)."""

from __future__ import annotations

from .choices import Kind
from .notices import Notice, default_notice_channel, plan_notices

# The autodebit_failed notices of one customer's day are one contact naming each loan declined that day.
NOTICE_KEY_PREFIX = "autodebit:"


def on_autodebit_failed(sender, attempts, at, actor, **kwargs):
    """Plan one ``autodebit_failed`` notice per declined attempt (``plan_notices`` makes a customer's declines of
    a day one contact). ``attempts`` come with their instalment, loan, customer and tier selected."""
    notices = []
    for attempt in attempts:
        inst = attempt.installment
        customer = inst.loan.customer
        notices.append(
            Notice(
                customer_id=customer.pk,
                tier_id=customer.tier_id,
                tz_name=customer.timezone,
                kind=Kind.AUTODEBIT_FAILED,
                channel=default_notice_channel(customer.tier),
                key_prefix=NOTICE_KEY_PREFIX,
                installment_ids=[inst.pk],
                loan_refs=[inst.loan.ref],
                due_date=inst.due_date,
            )
        )
    plan_notices(notices, now=at, actor=actor)
