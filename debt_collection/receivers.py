"""Receivers of the loan book's events, connected when the app is ready (``apps.py``)."""

from __future__ import annotations

from loans import signals as loan_signals
from notifications.compliance import register_contact_counter

from .calls import attempts_per_customer
from .closing import settle_payments
from .tier_changes import follow_tier_change


def on_payments_recorded(sender, at, installment_ids=None, loan_ids=None, payment_refs=None, **kwargs):
    """In the payment's transaction: a loan out of arrears is cured at once (``settle_payments``)."""
    if loan_ids:
        settle_payments(loan_ids, at, actor="system", payment_refs=payment_refs)


def on_tier_changed(sender, at, changes=None, **kwargs):
    if changes:
        follow_tier_change(list(changes), at, actor="event:tier_changed")


def connect() -> None:
    """Listen to the loan book, and have the weekly contact cap count the call attempts made too."""
    loan_signals.payments_recorded.connect(on_payments_recorded, dispatch_uid="collections.payments_recorded")
    loan_signals.tier_changed.connect(on_tier_changed, dispatch_uid="collections.tier_changed")
    register_contact_counter(attempts_per_customer)
