"""``manage.py verify_audit``: check the audit trail's hash chain, its anchors and its triggers; or, with
``--init-anchors``, start a new anchor file on purpose."""

from __future__ import annotations

import getpass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.audit_anchor_file import AnchorError
from core.audit_anchors import init_anchors
from core.audit_verification import verify_chain


class Command(BaseCommand):
    help = (
        "Walk the audit trail in sequence order, recompute every hash and link, compare with the anchor file "
        "(AUDIT_ANCHOR_PATH). Exit 0 with the count of events, or non-zero naming the first broken event. A "
        "missing or shortened anchor file is a failure; --init-anchors starts a new one on purpose (audited). "
        "Archived months are read from their files (--archive FILE where they were moved)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--anchors", help="Anchor file to check against (default: AUDIT_ANCHOR_PATH).")
        parser.add_argument(
            "--archive",
            action="append",
            default=[],
            metavar="FILE",
            help="An archived month's file (manage.py archive_month), when it is no longer where it was written. "
            "Repeat for several.",
        )
        parser.add_argument("--database", default="default")
        parser.add_argument(
            "--init-anchors",
            action="store_true",
            help="Check the chain itself, keep any existing anchor file aside as <name>.replaced-<time>, and start "
            "a new one at AUDIT_ANCHOR_PATH with the current head. Recorded as backoffice.audit.anchors_initialised.",
        )
        parser.add_argument(
            "--reason", default="", help="Why the anchor file is initialised (for the audit trail)."
        )

    def handle(self, *args, **options):
        if options["init_anchors"]:
            if options["anchors"]:
                raise CommandError("--init-anchors writes AUDIT_ANCHOR_PATH; it takes no --anchors.")
            try:
                done = init_anchors(
                    timezone.now(),
                    actor=f"command:verify_audit ({getpass.getuser()})",
                    reason=options["reason"],
                    using=options["database"],
                )
            except AnchorError as exc:
                raise CommandError(f"Anchor file not initialised: {exc}.", returncode=2) from exc
            previous = done["previous_file"]
            kept = (
                f"; the previous file is kept as {previous['moved_to']}" if previous.get("moved_to") else ""
            )
            self.stdout.write(f"Anchor file initialised at the head, seq {done['seq']}{kept}.")
            return
        path = Path(options["anchors"]) if options["anchors"] else None
        archives = [Path(name) for name in options["archive"]]
        result = verify_chain(path=path, using=options["database"], archives=archives)
        if not result.is_intact:
            where = ": "
            if result.event_id is not None:
                where = f" at event seq {result.seq} (id {result.event_id}{', ' + result.where if result.where else ''}): "
            elif result.seq is not None:
                where = f" at event seq {result.seq}: "
            raise CommandError(
                f"Audit trail BROKEN{where}{result.problem}. {result.count} events verified before it.",
                returncode=2,
            )
        archived = f" ({result.archived} of them from archive files)" if result.archived else ""
        self.stdout.write(
            f"Audit trail intact: {result.count} events verified{archived}, {result.anchors_checked} anchors "
            "matched."
        )
