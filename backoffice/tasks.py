"""Thin django-q2 entry points: they take no objects and are safe to run twice (claims, unique keys).

Scale-out: the scheduled daily run does the whole-book steps that are cheap and set-based itself, and splits
planning, collections and dispatch into chunks of customer ids, each an ordinary django-q2 task that any worker of
any cluster sharing the broker (Redis in production) can take. A chunk lost with a killed worker is harmless:
planning and collections are idempotent and run again at the next schedule, and the every-minute dispatch sweep
takes over rows whose claim lapsed. The idempotency key of each contact keeps a re-sent message from ever reaching the customer twice.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Max, Min
from django.utils import timezone
from django_q import tasks as queue

from core.audit_anchors import anchor_quietly, write_anchor
from core.heap import fewer_collections
from debt_collection.advance import collections_book_steps
from loans.autodebit import run_autodebit
from loans.models import Customer
from loans.scores import apply_credit_scores
from strategy.engine import Scope, dispatch, run_engine
from strategy.versions import record_changed_versions

from .models import PipelineRun
from .pipeline_runs import open_run, record_step, recorded


def run_daily_pipeline() -> dict:
    """Schedule entry: the pipeline as of now, with planning and dispatch fanned out in chunks. The chunks
    run live: each dispatches as of the moment a worker starts it (see ``dispatch_moment``). Recorded as a
    ``PipelineRun`` (trigger ``schedule``)."""

    now = timezone.now()
    run = open_run(trigger=PipelineRun.Trigger.SCHEDULE, as_of=now, is_live=True, steps_total=fan_out_steps())
    with recorded(run):
        return fan_out_daily_run(now, live=True, run=run)


def run_started_pipeline(run_id: int) -> dict:
    """Task entry for a run an operator started from the dashboard (a ``queued`` ``PipelineRun``): today's
    pipeline, live, exactly as the schedule runs it, as of the moment a worker takes it. Safe to run twice:
    a run that is no longer queued is left alone, and every step is idempotent anyway."""

    now = timezone.now()
    claimed = PipelineRun.objects.filter(pk=run_id, status=PipelineRun.Status.QUEUED).update(
        status=PipelineRun.Status.RUNNING, started_at=now, as_of=now, steps_total=fan_out_steps()
    )
    if not claimed:
        return {}
    run = PipelineRun.objects.get(pk=run_id)
    with recorded(run):
        return fan_out_daily_run(now, live=True, run=run)


def fan_out_steps() -> int:
    """How many entries ``fan_out_daily_run`` reports (its progress is counted against this)."""
    return 6


def dispatch_due() -> dict:
    """Send what is due by now over the whole book (the every-minute sweep)."""

    now = timezone.now()
    result = dispatch(now)
    anchor_quietly(now)
    return result


def customer_id_ranges(chunk: int) -> list[tuple[int, int]]:
    """Half-open id ranges of at most ``chunk`` customer ids covering the book (one query)."""

    bounds = Customer.objects.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return []
    return [
        (low, min(low + chunk, bounds["high"] + 1)) for low in range(bounds["low"], bounds["high"] + 1, chunk)
    ]


def fan_out_daily_run(now: dt.datetime, *, live: bool, chunk: int | None = None, run=None) -> dict:
    """Run the whole-book steps here and enqueue one ``run_chunk`` task per range of customers.

    Order as in SPEC.md: scores, auto-debit and the promises due (here), then per chunk of customers (workers)
    planning, collections and dispatch, then the legal-freeze sweep and the audit anchor (here). Returns what
    ran here and how many chunks were enqueued.

    ``live`` says whether ``now`` is the real clock (the schedule, ``run_jobs`` without ``--now``) or a moment
    the operator asked for (``run_jobs --now X``): a live chunk dispatches as of when a worker starts it, an
    "as of X" chunk as of X. The choice is made by the caller, the entry point, and travels with each task.
    With a ``PipelineRun``, each step's counts and the chunks' group are written to it as they are known.
    """

    summary: dict[str, dict] = {}

    def step(name: str, counts: dict) -> None:
        summary[name] = counts
        record_step(run, name, counts)

    step("apply_scores", apply_credit_scores(now) or {})
    step("autodebit", run_autodebit(now) or {})
    step("policy_versions", record_changed_versions(now))
    step("collections_before", collections_book_steps(now, before_chunks=True))
    ranges = customer_id_ranges(chunk or settings.DAILY_RUN_CHUNK_CUSTOMERS)
    group = f"daily-run-{now:%Y%m%dT%H%M%S}"
    if run is not None:
        run.chunk_group, run.chunks_enqueued = group, len(ranges)
        PipelineRun.objects.filter(pk=run.pk).update(chunk_group=group, chunks_enqueued=len(ranges))
    for low, high in ranges:
        queue.async_task(
            "backoffice.tasks.run_chunk",
            now.isoformat(),
            low,
            high,
            live,
            group=group,
            task_name=f"{group}-{low}",
        )
    step("chunks", {"enqueued": len(ranges)})
    step("collections_after", collections_book_steps(now, before_chunks=False))
    step("anchor_audit", write_anchor(now) or {})
    return summary


def dispatch_moment(now: dt.datetime, *, live: bool, started_at: dt.datetime) -> dt.datetime:
    """The moment a chunk dispatches as of: for a live run, when the worker started it (a chunk picked up late
    must not send by a stale clock, e.g. after the contact window closed); for an "as of X" run, X."""
    return max(now, started_at) if live else now


def run_chunk(now_iso: str, low: int, high: int, live: bool = False) -> dict:
    """For customers ``low <= id < high``: plan the contacts of the moment, advance their overdue loans on the
    collections ladder, then send what is due (the ladder's messages of the day included) as of
    ``dispatch_moment``, and anchor the audit head. A task's start is an entry point: the only place here that
    reads the clock."""

    started_at = timezone.now()
    now = dt.datetime.fromisoformat(now_iso)
    at = dispatch_moment(now, live=live, started_at=started_at)
    with fewer_collections():
        result = run_engine(now, Scope(customer_id_range=(low, high)), dispatch_at=at)
    result["anchor_audit"] = anchor_quietly(at)
    return result
