"""Receivers of loan-book events: a payment cancels what is pending, a tier change re-plans under the new tier."""

from __future__ import annotations

from .cancelling import cancel_pending
from .models import NotificationLog
from .planning import replan_after_tier_change


def on_installments_paid(sender, installment_ids, at, **kwargs):
    cancel_pending(
        reason=NotificationLog.Reason.PAID,
        actor="event:installments_paid",
        at=at,
        installment_ids=installment_ids,
    )


def on_tier_changed(sender, changes, at, **kwargs):
    if changes:
        replan_after_tier_change(list(changes), at, actor="event:tier_changed")
