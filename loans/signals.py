"""Events of the loan book other apps react to (the loan book itself knows nothing of reminders or cases).

- ``installments_paid(sender, installment_ids: list[int], at: datetime)``: instalments became paid in full.
- ``payments_recorded(sender, installment_ids: list[int], loan_ids: list[int], at: datetime,
  payment_refs: dict[loan_id, list[str]])``: money came in (full or partial) and was allocated; ``payment_refs``
  names the payments whose allocation changed, per loan.

Both are sent inside the payment's transaction (``loans.services.reallocate_loans``): a receiver's work (the
cure of a loan out of arrears) commits with the money or not at all.
- ``tier_changed(sender, changes: list[tuple[customer_id, old_tier_id, new_tier_id]], at: datetime)``.
- ``autodebit_failed(sender, attempts: list[AutoDebitAttempt], at: datetime, actor: str)``: the gateway declined
  these debits (each attempt with its instalment, loan, customer and tier selected). Sent inside the
  transaction that records the declines: a failing receiver (the customer's notice not planned) leaves the
  attempts pending, recorded with their notice on the next run.
- ``policy_saved(sender, tier_ids: list[int] | None, actor: str, reason: str, at: datetime)``: a tier's policy
  (the tier, its reminder rules or its ladder) was saved (``None``: compare every tier); the strategy app records
  the new versions (``loans.policy_changes``).
"""

from django.dispatch import Signal

installments_paid = Signal()
payments_recorded = Signal()
tier_changed = Signal()
autodebit_failed = Signal()
policy_saved = Signal()
