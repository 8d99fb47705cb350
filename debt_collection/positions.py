"""Where an overdue loan stands at one moment: its instalments past due, days past due and amount overdue, in
its customer's local calendar. Read in bulk (one query for a chunk of loans) by the daily advance and by the
payment receiver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from core.lookups import within_bounds
from loans.models import CreditTier, Installment, Loan
from loans.schedule import days_past_due, grace_days_of, local_date

# Who the daily collections job writes in the audit trail, and how many loans it handles in one transaction.
JOB_ACTOR = "job:advance_collections"
CHUNK = 2000
ZERO = Decimal("0")


@dataclass
class LoanPosition:
    """An active loan's past-due picture at one moment, in its customer's local calendar."""

    loan_id: int
    customer_id: int
    tz_name: str
    tier_id: int | None
    grace_days: int
    is_do_not_contact: bool
    is_opted_out_of_calls: bool
    today: dt.date
    loan_ref: str = ""
    past_due_ids: list[int] = field(default_factory=list)
    first_due_date: dt.date | None = None
    amount_overdue: Decimal = ZERO

    @property
    def dpd(self) -> int:
        """Days past due on ``today``, counted from the oldest instalment past due (``first_due_date``)."""
        return days_past_due(self.first_due_date, self.today) if self.first_due_date else 0

    @property
    def is_overdue(self) -> bool:
        """Past the tier's grace period: a case is open while this holds."""
        return self.dpd > self.grace_days


def past_due_cutoff(at: dt.datetime) -> dt.date:
    """Every instalment past due somewhere at ``at`` is due before this date: no time zone's local day is later
    than the UTC date plus one (UTC+14 at most), and past due means due before the local day."""
    return at.astimezone(dt.timezone.utc).date() + dt.timedelta(days=1)


def loan_positions(
    loan_ids: Iterable[int], at: dt.datetime, tiers: dict[int, CreditTier]
) -> dict[int, LoanPosition]:
    """Positions of the given loans that are active and have an unpaid instalment past its due date (one query)."""
    cutoff = past_due_cutoff(at)
    loan_ids = list(loan_ids)
    rows = (
        # Bounded: without it PostgreSQL hashed every active loan of a 100,000-loan book for each chunk of 2,000.
        Installment.objects.filter(
            within_bounds("loan_id", loan_ids),
            loan_id__any_of=loan_ids,
            paid_at__isnull=True,
            due_date__lt=cutoff,
            loan__status=Loan.Status.ACTIVE,
        )
        .order_by("loan_id", "due_date", "seq")
        .values_list(
            "id",
            "loan_id",
            "due_date",
            "amount_due",
            "amount_paid",
            "loan__customer_id",
            "loan__customer__timezone",
            "loan__customer__tier_id",
            "loan__customer__do_not_contact",
            "loan__customer__opt_out_call",
            "loan__ref",
        )
    )
    positions: dict[int, LoanPosition] = {}
    for (
        inst_id,
        loan_id,
        due,
        amount_due,
        amount_paid,
        customer_id,
        tz_name,
        tier_id,
        dnc,
        no_calls,
        ref,
    ) in rows:
        pos = positions.get(loan_id)
        if pos is None:
            pos = positions[loan_id] = LoanPosition(
                loan_id=loan_id,
                customer_id=customer_id,
                tz_name=tz_name,
                tier_id=tier_id,
                grace_days=grace_days_of(tiers.get(tier_id)),
                is_do_not_contact=dnc,
                is_opted_out_of_calls=no_calls,
                today=local_date(at, tz_name),
                loan_ref=ref,
            )
        if due < pos.today:
            pos.past_due_ids.append(inst_id)
            if pos.first_due_date is None or due < pos.first_due_date:
                pos.first_due_date = due
            pos.amount_overdue += max(amount_due - amount_paid, ZERO)
    return {k: v for k, v in positions.items() if v.past_due_ids}
