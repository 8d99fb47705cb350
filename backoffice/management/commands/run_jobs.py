"""``manage.py run_jobs [--now ISO-8601]``: the whole pipeline as of that moment, as the scheduled jobs run it."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from backoffice.jobs import run_pipeline


def parse_moment(text: str) -> dt.datetime:
    """ISO-8601; a moment without an offset is read in the project's TIME_ZONE."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--now: “{text}” is not an ISO-8601 date and time (e.g. 2026-11-30T10:00:00+08:00)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(settings.TIME_ZONE))
    return moment.astimezone(dt.UTC)


class Command(BaseCommand):
    help = (
        "Run the pipeline as of a moment: apply scores, auto-debit, plan contacts, advance collections, dispatch. "
        "Running it twice for the same moment changes nothing more."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="ISO-8601 moment, e.g. 2026-11-30T10:00:00+08:00 (default: now).")

    def handle(self, *args, now=None, **options):
        moment = parse_moment(now) if now else timezone.now()
        self.stdout.write(f"pipeline as of {moment.isoformat()}")
        for step, summary in run_pipeline(moment).items():
            counts = ", ".join(f"{k}={v}" for k, v in sorted(summary.items())) or "nothing to do"
            self.stdout.write(f"  {step}: {counts}")
