"""``manage.py preview_policy <tier_code> --from DATE --to DATE [--sample N] --format json``: what the tier's policy
(and, with a proposal, the proposed one) would do over those local days, by the engine the daily run uses.

``--replay-days N [--version ID] [--now ISO]``: the shadow replay of the last N local days (``strategy.replay``),
beside what actually happened."""

from __future__ import annotations

import datetime as dt
import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loans.models import CreditTier, PolicyVersion
from strategy.policy import parse_channel_order, parse_ladder, parse_rules
from strategy.preview import DEFAULT_SAMPLE, MAX_SAMPLE, preview_policy
from strategy.replay import MAX_REPLAY_DAYS, replay_policy


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"“{text}” is not a date (YYYY-MM-DD).") from None


def _lines(text: str | None) -> str | None:
    """A proposal's lines on the command line: separated by ``;`` or new lines."""
    return None if text is None else text.replace(";", "\n")


class Command(BaseCommand):
    help = (
        "Preview a tier's contact and collections policy over local days by running the real engine over a sample "
        "of its customers in a transaction that is rolled back: nothing is saved or sent. Assumes nobody pays and "
        "providers accept everything. With a proposal (--grace-period-days, --max-contacts-per-week, "
        "--channel-order, --rules, --ladder) it also runs the proposed policy and lists the loans whose outcome "
        "changes. While it runs, other audited writes wait for it: keep --sample small. With --replay-days N it "
        "replays the last N local days instead (to yesterday), beside what actually happened: the book put back as "
        "it stood, the real payments and calls applied at their moments (see the README)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # ``--version ID`` names a policy version here, in place of Django's --version (the framework's).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("tier_code")
        parser.add_argument("--from", dest="start", help="First local day (YYYY-MM-DD).")
        parser.add_argument("--to", dest="end", help="Last local day (YYYY-MM-DD).")
        parser.add_argument(
            "--replay-days",
            type=int,
            help=f"Replay the last N local days, to yesterday (1 to {MAX_REPLAY_DAYS}), instead of --from/--to.",
        )
        parser.add_argument(
            "--version", type=int, help="With --replay-days: replay this saved policy version (its id)."
        )
        parser.add_argument(
            "--now",
            help="With --replay-days: the moment whose local day ends the range (ISO-8601; default now).",
        )
        parser.add_argument(
            "--sample",
            type=int,
            default=DEFAULT_SAMPLE,
            help=f"Customers of the tier to run over, the first by id (1 to {MAX_SAMPLE}; default {DEFAULT_SAMPLE}).",
        )
        parser.add_argument("--format", choices=["json", "text"], default="text")
        parser.add_argument("--grace-period-days", type=int, help="Proposed grace period.")
        parser.add_argument("--max-contacts-per-week", type=int, help="Proposed weekly contact cap.")
        parser.add_argument("--channel-order", help="Proposed channel order, e.g. sms,push,email.")
        parser.add_argument(
            "--rules", help="Proposed reminder rules: offset,channel,kind,HH:MM; separated by ';'."
        )
        parser.add_argument(
            "--ladder", help="Proposed ladder: min_dpd,action[,stage[,kind]]; separated by ';'."
        )

    def handle(self, *args, tier_code, start, end, sample, format, **options):
        tier = CreditTier.objects.filter(code=tier_code).first()
        if tier is None:
            raise CommandError(f"No tier with code “{tier_code}”.")
        try:
            proposal = {
                "grace_period_days": options["grace_period_days"],
                "max_contacts_per_week": options["max_contacts_per_week"],
                "channel_order": (
                    parse_channel_order(options["channel_order"]) if options["channel_order"] else None
                ),
                "rules": parse_rules(_lines(options["rules"])) if options["rules"] is not None else None,
                "ladder": parse_ladder(_lines(options["ladder"])) if options["ladder"] is not None else None,
            }
            if options["replay_days"] is not None:
                return self._replay(tier, options, sample, format, proposal)
            if start is None or end is None:
                raise CommandError("Give --from and --to, or --replay-days.")
            result = preview_policy(tier, _date(start), _date(end), sample_size=sample, **proposal)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        figures = result["current"].as_spec()
        if any(value is not None for value in proposal.values()):
            figures["proposed"] = result["proposed"].as_spec()
        figures["changed_loans"] = result["changed_loans"]
        if format == "json":
            self.stdout.write(json.dumps(figures, ensure_ascii=False, indent=2))
            return
        self.stdout.write(
            f"tier {tier.code}, {result['start']} to {result['end']}, {result['sample']['customers']} customers, "
            f"{result['sample']['loans']} loans (nothing saved, nothing sent)"
        )
        for title, spec in [("current", figures), ("proposed", figures.get("proposed"))]:
            if spec is None:
                continue
            self.stdout.write(f"  {title}: {_contacts_and_escalations(spec)}")
        for loan in result["changed_loans"]:
            self.stdout.write(f"  changed {loan['loan_ref']}: {loan['current']} -> {loan['proposed']}")

    def _replay(self, tier, options, sample, format, proposal) -> None:
        version = None
        if options["version"] is not None:
            version = PolicyVersion.objects.filter(pk=options["version"], tier=tier).first()
            if version is None:
                raise CommandError(f"No policy version {options['version']} of tier “{tier.code}”.")
            if any(value is not None for value in proposal.values()):
                raise CommandError("Give --version or a proposal, not both.")
        now = _moment(options["now"]) if options["now"] else timezone.now()
        result = replay_policy(
            tier,
            today=timezone.localdate(now),
            days=options["replay_days"],
            sample_size=sample,
            version=version,
            **proposal,
        )
        replay = result["replay"]
        figures = {
            "replay": {
                "from": result["start"].isoformat(),
                "to": result["end"].isoformat(),
                "sample": result["sample"],
                "policy": (
                    f"version {version.number}"
                    if version
                    else "proposed"
                    if result["is_changed"]
                    else "saved"
                ),
                "payments_replayed": replay["payments_replayed"],
                "calls_not_replayed": dict(sorted(replay["calls_not_replayed"].items())),
            },
            "happened": result["current"].as_replay_spec(),
            "replayed": result["proposed"].as_replay_spec(),
            "changed_loans": result["changed_loans"],
        }
        if format == "json":
            self.stdout.write(json.dumps(figures, ensure_ascii=False, indent=2))
            return
        self.stdout.write(
            f"tier {tier.code}, replay of {result['start']} to {result['end']} under the "
            f"{figures['replay']['policy']} policy, {result['sample']['customers']} customers, "
            f"{result['sample']['loans']} loans (nothing saved, nothing sent)"
        )
        for title in ("happened", "replayed"):
            spec = figures[title]
            calls = ", ".join(f"{outcome}={n}" for outcome, n in spec["calls"].items())
            self.stdout.write(
                f"  {title}: {_contacts_and_escalations(spec)}; call tasks={spec['call_tasks']}; "
                f"calls: {calls or 'none'}"
            )
        for loan in result["changed_loans"]:
            self.stdout.write(f"  changed {loan['loan_ref']}: {loan['current']} -> {loan['proposed']}")


def _contacts_and_escalations(spec: dict) -> str:
    """One line of the text output: contacts sent, deferred and held back by reason; ladder steps by action."""
    contacts = spec["contacts"]
    held = ", ".join(
        f"{status} {reason or '-'}={n}"
        for status in ("suppressed", "cancelled", "failed")
        for reason, n in contacts.get(status, {}).items()
    )
    steps = ", ".join(f"{action}={n}" for action, n in spec["escalations"].items())
    return (
        f"sent={contacts['sent']} deferred={contacts['deferred']} {held or 'nothing held back'}; "
        f"escalations: {steps or 'none'}"
    )


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"“{text}” is not a moment (ISO-8601).") from None
    if timezone.is_naive(moment):
        raise CommandError(f"“{text}”: give the offset (e.g. +08:00).")
    return moment
