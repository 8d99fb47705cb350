"""``manage.py record_call <loan_ref> --outcome OUTCOME --at ISO [--covers REF,REF] [--promise-amount X
--promise-date DATE] [--actor NAME]``: what a dialer integration calls after each attempt.

The attempt is recorded on the loan's next open call task by the same service as the collector's form
(``debt_collection.call_outcomes.record_call_outcome``), with the same checks: a call that may not be made at that
moment is refused with exit status 2 and its reason code, and nothing is recorded.
"""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.moments import parse_moment
from debt_collection.call_outcomes import CallRefused, record_call_outcome
from debt_collection.models import CallTask

REFUSED_EXIT = 2


class Command(BaseCommand):
    help = (
        "Record a call attempt on the loan's next open call task, checked as of --at: refused with exit 2 and "
        "the reason code when the call may not be made then (nothing is recorded)."
    )

    def add_arguments(self, parser):
        parser.add_argument("loan_ref")
        parser.add_argument("--outcome", required=True, choices=[c for c in CallTask.Outcome.values if c])
        parser.add_argument("--at", required=True, help="When the call was made, ISO-8601 with offset.")
        parser.add_argument(
            "--covers", default="", help="Other loans of the customer the call was about: REF,REF"
        )
        parser.add_argument("--promise-amount", help="For promise_to_pay: the amount promised.")
        parser.add_argument("--promise-date", help="For promise_to_pay: the date promised (YYYY-MM-DD).")
        parser.add_argument("--note", default="")
        parser.add_argument("--actor", default="dialer", help="Who made the call (a user name or a system).")

    def handle(self, *args, **options):
        try:
            at = parse_moment(options["at"]).astimezone(dt.UTC)
        except ValueError as exc:
            raise CommandError(f"--at: {exc}") from None
        amount = date = None
        if options["promise_amount"]:
            try:
                amount = Decimal(options["promise_amount"])
            except InvalidOperation:
                raise CommandError(
                    f"--promise-amount: “{options['promise_amount']}” is not an amount."
                ) from None
        if options["promise_date"]:
            try:
                date = dt.date.fromisoformat(options["promise_date"])
            except ValueError:
                raise CommandError(f"--promise-date: “{options['promise_date']}” is not a date.") from None
        task = (
            CallTask.objects.filter(case__loan__ref=options["loan_ref"], status=CallTask.Status.OPEN)
            .order_by("scheduled_for", "id")
            .first()
        )
        if task is None:
            raise CommandError(f"Loan {options['loan_ref']} has no open call task.")
        actor = get_user_model().objects.filter(username=options["actor"]).first() or options["actor"]
        try:
            task = record_call_outcome(
                task,
                outcome=options["outcome"],
                actor=actor,
                at=at,
                note=options["note"],
                promise_amount=amount,
                promise_date=date,
                covers=[r for r in options["covers"].split(",") if r.strip()],
            )
        except CallRefused as refused:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(refused.inputs.items()) if k in _SHOWN)
            self.stderr.write(f"refused: {refused.reason}" + (f" ({detail})" if detail else ""))
            sys.exit(REFUSED_EXIT)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"recorded: {task.outcome} on call task {task.pk} (loan {options['loan_ref']})")


# What a refusal prints besides its reason code (the audit-style inputs are longer than a terminal line).
_SHOWN = ("limit", "deferred_to", "window", "zones", "do_not_contact_reason", "max", "channel")
