"""Receivers of the loan book's events (wired in ``apps.py``)."""

from __future__ import annotations


def on_payments_recorded(sender, installment_ids=None, loan_ids=None, at=None, **kwargs):
    from django.utils import timezone

    from .services import settle_payments

    if loan_ids:
        settle_payments(loan_ids, at or timezone.now(), actor="system")


def on_tier_changed(sender, changes=None, at=None, **kwargs):
    from django.utils import timezone

    from .services import follow_tier_change

    if changes:
        follow_tier_change(list(changes), at or timezone.now(), actor="event:tier_changed")
