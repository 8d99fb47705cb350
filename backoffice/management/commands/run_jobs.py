"""``manage.py run_jobs [--now ISO-8601]``: the whole pipeline as of that moment, as the scheduled jobs run it."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from backoffice.jobs import pipeline_steps, run_pipeline
from backoffice.models import PipelineRun
from backoffice.pipeline_runs import open_run, recorded
from core import moments


def parse_moment(text: str) -> dt.datetime:
    """``--now`` as a UTC moment (see ``core.moments.parse_moment``)."""
    try:
        return moments.parse_moment(text).astimezone(dt.UTC)
    except ValueError as exc:
        raise CommandError(f"--now: {exc}") from None


class Command(BaseCommand):
    help = (
        "Run the pipeline as of a moment: apply scores, auto-debit, plan contacts, advance collections, dispatch. "
        "Running it twice for the same moment changes nothing more."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="ISO-8601 moment, e.g. 2026-11-30T10:00:00+08:00 (default: now).")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Scale-out: run the whole-book steps here and enqueue planning and dispatch in chunks of customers "
            "for the django-q2 clusters (all clusters sharing the broker take them).",
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=None,
            help="Customers per chunk with --enqueue (default DAILY_RUN_CHUNK_CUSTOMERS).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run as of a --now moment in the future: it sends real messages before their time.",
        )

    def handle(self, *args, now=None, enqueue=False, chunk_size=None, force=False, **options):
        # An entry point: the real clock is read here, once, to run live or to check an "as of" moment.
        real_now = timezone.now()
        moment = parse_moment(now) if now else real_now
        if now and moment > real_now and not force:
            raise CommandError(
                f"--now {moment.isoformat()} is in the future (it is {real_now.isoformat()}): the run would send "
                "real messages before their time. Add --force if that is what you want."
            )
        if chunk_size is not None and chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        self.stdout.write(f"pipeline as of {moment.isoformat()}{' (chunks enqueued)' if enqueue else ''}")
        from backoffice.tasks import fan_out_daily_run, fan_out_steps

        run = open_run(
            trigger=PipelineRun.Trigger.COMMAND,
            as_of=moment,
            is_live=not now,
            steps_total=fan_out_steps() if enqueue else len(pipeline_steps()),
        )
        with recorded(run):
            if enqueue:
                results = fan_out_daily_run(moment, live=not now, chunk=chunk_size, run=run)
            else:
                results = run_pipeline(moment, run=run)
        for step, summary in results.items():
            counts = ", ".join(f"{k}={v}" for k, v in sorted(summary.items())) or "nothing to do"
            self.stdout.write(f"  {step}: {counts}")
