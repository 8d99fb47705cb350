"""Payment gateways for auto-debit, chosen by the dotted path ``settings.PAYMENT_GATEWAY_BACKEND``.

A gateway has ``debit(*, loan, installment, amount, idempotency_key) -> DebitResult``. A declined debit is a
result (``succeeded=False`` with a reason code such as ``insufficient_funds``), not an exception; an exception
means the outcome is unknown, and the same idempotency key must be used to ask again.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

INSUFFICIENT_FUNDS = "insufficient_funds"
CARD_EXPIRED = "card_expired"


@dataclass
class DebitResult:
    succeeded: bool
    reference: str
    failure_reason: str = ""


class PaymentGateway(Protocol):
    def debit(self, *, loan, installment, amount: Decimal, idempotency_key: str) -> DebitResult: ...


def get_gateway() -> PaymentGateway:
    """An instance of the gateway named by ``settings.PAYMENT_GATEWAY_BACKEND``."""
    return import_string(settings.PAYMENT_GATEWAY_BACKEND)()


def parse_failures(spec: str) -> list[tuple[str, float]]:
    """``"insufficient_funds:0.1,card_expired:0.02"`` -> ``[("insufficient_funds", 0.1), ("card_expired", 0.02)]``.

    Raises ImproperlyConfigured for a malformed entry, a probability outside 0..1 or a total above 1.
    """
    failures = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        reason, sep, probability = part.partition(":")
        try:
            p = float(probability) if sep else float("nan")
        except ValueError:
            p = float("nan")
        if not reason.strip() or not 0 <= p <= 1:
            raise ImproperlyConfigured(
                f"PAYMENT_SIMULATOR_FAILURES: {part!r} is not reason:probability (a number between 0 and 1)."
            )
        failures.append((reason.strip(), p))
    if sum(p for _r, p in failures) > 1 + 1e-9:
        raise ImproperlyConfigured("PAYMENT_SIMULATOR_FAILURES: the probabilities add up to more than 1.")
    return failures


# Forced outcomes for tests and demos: loan ref (or None for every loan) -> failure reason.
_forced: dict[str | None, str] = {}


@contextlib.contextmanager
def simulate_failure(reason: str, *, loan_refs: list[str] | None = None) -> Iterator[None]:
    """Make the simulator decline with ``reason`` (for the given loans, or all) inside the block."""
    keys: list[str | None] = list(loan_refs) if loan_refs else [None]
    previous = {k: _forced.get(k) for k in keys}
    _forced.update(dict.fromkeys(keys, reason))
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                _forced.pop(k, None)
            else:
                _forced[k] = v


class SimulatorGateway:
    """The default gateway: approves, or declines with the configured probabilities.

    The decision is a hash of the idempotency key, so asking again about the same debit (a re-run, a retry after
    a crash) always gets the same answer, and the reference is stable too.
    """

    def __init__(self) -> None:
        self.failures = parse_failures(settings.PAYMENT_SIMULATOR_FAILURES)

    def debit(self, *, loan, installment, amount: Decimal, idempotency_key: str) -> DebitResult:
        digest = hashlib.sha256(str(idempotency_key).encode("utf-8")).hexdigest()
        reference = f"sim-{digest[:24]}"
        forced = _forced.get(getattr(loan, "ref", None)) or _forced.get(None)
        if forced:
            return DebitResult(succeeded=False, reference=reference, failure_reason=forced)
        draw = int(digest[24:40], 16) / float(1 << 64)
        threshold = 0.0
        for reason, probability in self.failures:
            threshold += probability
            if draw < threshold:
                return DebitResult(succeeded=False, reference=reference, failure_reason=reason)
        return DebitResult(succeeded=True, reference=reference)
