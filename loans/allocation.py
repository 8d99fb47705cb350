"""Payment allocation: which instalments a loan's money pays. Pure rules over plain values, no ORM.

The waterfall is Apache Fineract's "due date order": a payment pays the loan's oldest unpaid instalment first
(by due date, then number), then the next, never more than an instalment's amount still due; an explicit
start (``installment_seq`` in the admin or an import) is paid first, then the waterfall goes on oldest first.
What is left after the loan's whole balance is the loan's credit.

A loan's allocation is the replay of all its payments, in the order they were received, over its instalments
(``allocate_loan``): re-importing the same payments gives the same allocation, and a reversed or corrected
payment re-allocates everything received after it, as a loan servicing system reprocesses its transactions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

ZERO = Decimal("0")


class Unpaid(NamedTuple):
    """An instalment with money still due: ``key`` names it (its id), ``outstanding`` is what is still due.
    (A tuple: a loan's replay makes one per instalment and payment.)"""

    key: Hashable
    seq: int
    due_date: dt.date
    outstanding: Decimal


def allocate(
    amount: Decimal, unpaid: Iterable[Unpaid], start_seq: int | None = None
) -> tuple[list[tuple[Hashable, Decimal]], Decimal]:
    """Split ``amount`` over ``unpaid`` instalments: the one numbered ``start_seq`` first (when it is among
    them), then the others oldest first (due date, then number); none is paid more than its outstanding.

    Returns ``([(instalment key, amount), ...], credit)`` where credit is what the instalments could not take.
    """
    order = sorted((u for u in unpaid if u.outstanding > ZERO), key=lambda u: (u.due_date, u.seq))
    if start_seq is not None:
        order.sort(key=lambda u: u.seq != start_seq)  # stable: the rest keeps its due-date order
    remaining = Decimal(amount)
    allocations: list[tuple[Hashable, Decimal]] = []
    for due in order:
        if remaining <= ZERO:
            break
        part = min(remaining, due.outstanding)
        allocations.append((due.key, part))
        remaining -= part
    return allocations, max(remaining, ZERO)


@dataclass(frozen=True)
class Instalment:
    key: Hashable
    seq: int
    due_date: dt.date
    amount_due: Decimal


@dataclass(frozen=True)
class Receipt:
    """A payment of the loan: ``start_seq`` is the instalment an operator or a file chose, if any."""

    key: Hashable
    amount: Decimal
    received_at: dt.datetime
    start_seq: int | None = None


@dataclass
class LoanAllocation:
    """The replay's outcome for one loan."""

    #: ``{(payment key, instalment key): amount}``, only positive amounts.
    allocations: dict[tuple[Hashable, Hashable], Decimal] = field(default_factory=dict)
    #: Per instalment: the sum allocated to it.
    amount_paid: dict[Hashable, Decimal] = field(default_factory=dict)
    #: Per instalment with a positive amount due: when the payment that completed it was received (or None).
    paid_at: dict[Hashable, dt.datetime | None] = field(default_factory=dict)
    #: Per instalment paid in full: the payment that completed it.
    paid_by: dict[Hashable, Hashable] = field(default_factory=dict)
    #: Per payment: the part no instalment could take (it is the loan's credit).
    unallocated: dict[Hashable, Decimal] = field(default_factory=dict)

    @property
    def credit(self) -> Decimal:
        return sum(self.unallocated.values(), ZERO)


def allocate_loan(instalments: Sequence[Instalment], payments: Iterable[Receipt]) -> LoanAllocation:
    """Replay ``payments`` (by ``received_at``, then key) over ``instalments`` with ``allocate``."""
    result = LoanAllocation()
    outstanding = {i.key: max(i.amount_due, ZERO) for i in instalments}
    result.amount_paid = dict.fromkeys(outstanding, ZERO)
    result.paid_at = {i.key: None for i in instalments if i.amount_due > ZERO}
    for payment in sorted(payments, key=lambda p: (p.received_at, p.key)):
        # Only what is still due (``allocate`` passes over the rest).
        unpaid = [
            Unpaid(i.key, i.seq, i.due_date, outstanding[i.key])
            for i in instalments
            if outstanding[i.key] > ZERO
        ]
        parts, credit = allocate(payment.amount, unpaid, payment.start_seq)
        for key, part in parts:
            result.allocations[(payment.key, key)] = part
            result.amount_paid[key] += part
            outstanding[key] -= part
            if outstanding[key] <= ZERO:
                result.paid_at[key] = payment.received_at
                result.paid_by[key] = payment.key
        result.unallocated[payment.key] = credit
    return result
