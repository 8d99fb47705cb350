"""Recording the daily pipeline's runs: each entry point (the schedule, ``run_jobs``, the dashboard's button)
opens a ``PipelineRun``, the pipeline writes each step's counts to it as the step finishes, and the run ends
succeeded or failed with its error. The dashboard reads the latest run; the run's page shows its progress."""

from __future__ import annotations

import contextlib
import datetime as dt
import traceback

from django.db.models import F
from django.utils import timezone

from .models import PipelineRun


def open_run(
    *, trigger: str, as_of: dt.datetime | None, is_live: bool, steps_total: int = 0, user=None
) -> PipelineRun:
    """A new run, ``running`` from now (bookkeeping time, not an input of any rule)."""
    return PipelineRun.objects.create(
        trigger=trigger,
        user=user,
        as_of=as_of,
        is_live=is_live,
        steps_total=steps_total,
        status=PipelineRun.Status.RUNNING,
        started_at=timezone.now(),
    )


def record_step(run: PipelineRun | None, name: str, counts: dict) -> None:
    """Add one finished step's counts to ``run`` (no-op without a run)."""
    if run is None:
        return
    run.steps = [*run.steps, [name, counts]]
    PipelineRun.objects.filter(pk=run.pk).update(steps=run.steps)


def finish_run(run: PipelineRun, *, error: str = "") -> None:
    run.status = PipelineRun.Status.FAILED if error else PipelineRun.Status.SUCCEEDED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])


@contextlib.contextmanager
def recorded(run: PipelineRun):
    """Ends ``run`` as succeeded when the block ends, or as failed with the traceback (and re-raises)."""
    try:
        yield run
    except BaseException:
        finish_run(run, error=traceback.format_exc(limit=8)[-4000:])
        raise
    finish_run(run)


def latest_run() -> PipelineRun | None:
    return PipelineRun.objects.select_related("user").order_by(F("created_at").desc(), "-id").first()


__all__ = ["finish_run", "latest_run", "open_run", "record_step", "recorded"]
