"""The day's engine: plan the contacts, advance collections, dispatch what is due, as of a moment, for the whole
book, a chunk of it or a set of customers.

One composition, run by the daily pipeline over the book (``backoffice.jobs.PIPELINE``), by each worker over
its chunk of customers (``backoffice.tasks.run_chunk``) and by the policy preview over a sample inside a
rolled-back transaction (``strategy.preview``): the preview cannot drift from the real run because it is the
real run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from debt_collection.advance import advance_collections
from notifications.dispatch import dispatch_due
from notifications.planning import plan_contacts

from .experiments import assign_arms


@dataclass(frozen=True)
class Scope:
    """Whose contacts and loans a step handles: the whole book (neither set), the customers with
    ``low <= id < high`` (``customer_id_range``, a worker's chunk), or exactly ``customer_ids``."""

    customer_ids: tuple[int, ...] | None = None
    customer_id_range: tuple[int, int] | None = None

    @classmethod
    def of(cls, customer_ids: Iterable[int]) -> Scope:
        return cls(customer_ids=tuple(sorted(set(customer_ids))))

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments every step takes to narrow itself to this scope."""
        found: dict[str, Any] = {}
        if self.customer_ids is not None:
            found["customer_ids"] = list(self.customer_ids)
        if self.customer_id_range is not None:
            found["customer_id_range"] = self.customer_id_range
        return found


BOOK = Scope()


def plan(now: dt.datetime, scope: Scope = BOOK) -> dict:
    """Pipeline step "plan": customers of a tier under a champion/challenger test put in their arm
    (``strategy.experiments.assign_arms``), then the rule contacts of each customer's local day holding ``now``."""
    assigned = assign_arms(now, **scope.arguments())
    counts = plan_contacts(now, **scope.arguments())
    if assigned:
        counts["assigned_to_arms"] = sum(assigned.values())
    return counts


def advance(now: dt.datetime, scope: Scope = BOOK) -> dict:
    """Pipeline step "collections": overdue loans along their tier's ladder as of ``now``. Over a chunk
    (``customer_id_range``) the promises and the legal-freeze sweep are left to the whole-book steps around the
    chunks (``debt_collection.advance.collections_book_steps``); over the book or a set of customers they are
    part of the step."""
    return advance_collections(now, **scope.arguments())


def dispatch(
    now: dt.datetime, scope: Scope = BOOK, *, backend_for: Callable[[str], Any] | None = None
) -> dict:
    """Pipeline step "dispatch": the contacts due by ``now`` through the send-time gates, delivered by
    ``backend_for(channel)`` (default the configured backends)."""
    return dispatch_due(now, backend_for=backend_for, **scope.arguments())


def run_engine(
    now: dt.datetime,
    scope: Scope = BOOK,
    *,
    dispatch_at: dt.datetime | None = None,
    backend_for: Callable[[str], Any] | None = None,
    after_step: Callable[[str, dict], None] | None = None,
) -> dict[str, dict]:
    """The three steps in the pipeline's order (SPEC.md): plan and advance collections as of ``now`` (the
    ladder's messages join the day's contacts), then dispatch as of ``dispatch_at`` (default ``now``; a live
    worker that started late dispatches as of its start), over ``scope``. ``after_step(name, counts)`` is called
    as each step ends. Returns each step's counts by step name. A step's error propagates: the earlier steps
    stay done (each is idempotent), nothing of the failed step's own transaction is kept."""
    results: dict[str, dict] = {}

    def done(name: str, counts: dict) -> None:
        results[name] = counts or {}
        if after_step is not None:
            after_step(name, results[name])

    done("plan", plan(now, scope))
    done("collections", advance(now, scope))
    done("dispatch", dispatch(dispatch_at or now, scope, backend_for=backend_for))
    return results
