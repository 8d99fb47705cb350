"""``manage.py verify_audit``: check the audit trail's hash chain, its anchors and its triggers."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backoffice.audit import verify_chain


class Command(BaseCommand):
    help = (
        "Walk the audit trail in sequence order, recompute every hash and link, compare with the anchor file "
        "(AUDIT_ANCHOR_PATH). Exit 0 with the count of events, or non-zero naming the first broken event."
    )

    def add_arguments(self, parser):
        parser.add_argument("--anchors", help="Anchor file to check against (default: AUDIT_ANCHOR_PATH).")
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        path = Path(options["anchors"]) if options["anchors"] else None
        result = verify_chain(path=path, using=options["database"])
        if not result.is_intact:
            where = f"event seq {result.seq} (id {result.event_id}): " if result.event_id is not None else ""
            if result.event_id is None and result.seq is not None:
                where = f"event seq {result.seq}: "
            raise CommandError(
                f"Audit trail BROKEN at {where}{result.problem}. {result.count} events verified before it.",
                returncode=2,
            )
        self.stdout.write(
            f"Audit trail intact: {result.count} events verified, {result.anchors_checked} anchors matched."
        )
