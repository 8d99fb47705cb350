"""Events of the loan book other apps react to (the loan book itself knows nothing of reminders or cases).

- ``installments_paid(sender, installment_ids: list[int], at: datetime)``: instalments became paid in full.
- ``payments_recorded(sender, installment_ids: list[int], loan_ids: list[int], at: datetime)``: money came in,
  full or partial.
- ``tier_changed(sender, changes: list[tuple[customer_id, old_tier_id, new_tier_id]], at: datetime)``.
"""

from django.dispatch import Signal

installments_paid = Signal()
payments_recorded = Signal()
tier_changed = Signal()
