"""Receivers of the loan book's events (wired in ``apps.py``)."""

from __future__ import annotations

from backoffice.audit import Event, log_events


def on_payments_recorded(sender, installment_ids=None, loan_ids=None, at=None, **kwargs):
    from django.utils import timezone

    from .services import settle_payments

    if loan_ids:
        settle_payments(loan_ids, at or timezone.now(), actor="system")


def on_tier_changed(sender, changes=None, at=None, **kwargs):
    """Open cases follow the new tier's ladder from the next run on; the switch is recorded, and ladder messages
    the old tier planned that are not sent yet are cancelled (``tier_changed``)."""
    from collections import defaultdict

    from django.utils import timezone

    from notifications.services import cancel_pending

    from .models import CollectionCase
    from .services import LADDER_KEY_PREFIX

    by_customer = {customer_id: (old, new) for customer_id, old, new in changes or []}
    if not by_customer:
        return
    at = at or timezone.now()
    by_new_tier = defaultdict(list)
    for customer_id, (_old, new) in by_customer.items():
        by_new_tier[new].append(customer_id)
    for new, customer_ids in by_new_tier.items():
        cancel_pending(
            reason="tier_changed",
            actor="event:tier_changed",
            at=at,
            customer_ids=customer_ids,
            dedupe_prefix=LADDER_KEY_PREFIX,
            except_tier_id=new,
        )
    events = []
    for case in (
        CollectionCase.objects.open().filter(loan__customer_id__in=list(by_customer)).select_related("loan")
    ):
        old, new = by_customer[case.loan.customer_id]
        events.append(
            Event(
                action="collections.case.tier_changed",
                actor="system",
                object_type="collections.CollectionCase",
                object_id=str(case.pk),
                at=at,
                before={"tier_id": old},
                after={"tier_id": new, "stage": case.stage, "dpd": case.dpd},
            )
        )
    log_events(events)
