"""Receivers of the loan book's events (wired in ``apps.py``)."""

from __future__ import annotations

from .advance import follow_tier_change
from .closing import settle_payments


def on_payments_recorded(sender, at, installment_ids=None, loan_ids=None, payment_refs=None, **kwargs):
    """In the payment's transaction: a loan out of arrears is cured at once (``settle_payments``)."""
    if loan_ids:
        settle_payments(loan_ids, at, actor="system", payment_refs=payment_refs)


def on_tier_changed(sender, at, changes=None, **kwargs):
    if changes:
        follow_tier_change(list(changes), at, actor="event:tier_changed")
