"""A process killed while anchoring never wedges the anchor file.

An anchor's line is appended only after the event recording it commits. Killed before the commit, nothing of
it is anywhere (the event is rolled back, the file untouched). Killed between the commit and the append, the file
is one anchor short and a note beside it names that anchor: the next anchoring writes the missing line and goes
on. A file one anchor short with no such note (cut, or restored from an older copy) is still refused."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core import audit_anchors
from core.audit_anchor_file import AnchorError
from core.audit_anchors import write_anchor
from core.models import AuditEvent
from tests.factories_audit import make_events

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
pytestmark = pytest.mark.django_db


class Killed(BaseException):
    """The process dies here (not an Exception: nothing in the code under test may catch it)."""


@pytest.fixture
def anchor_file(settings, tmp_path):
    settings.AUDIT_ANCHOR_PATH = tmp_path / "anchors" / "audit-anchor.jsonl"
    return settings.AUDIT_ANCHOR_PATH


def verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def seqs(path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()]


def test_killed_after_the_commit_and_before_the_append_the_next_anchoring_writes_the_missing_line(
    anchor_file, monkeypatch
):
    make_events(2)
    write_anchor(NOW)
    make_events(2)
    with monkeypatch.context() as m:
        m.setattr(audit_anchors, "_append_committed", lambda *args: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            write_anchor(NOW + dt.timedelta(hours=1))
    lost = AuditEvent.objects.order_by("-seq").first()
    assert lost.action == "backoffice.audit.anchored" and lost.seq not in seqs(anchor_file)
    with pytest.raises(CommandError, match="holds 1 anchors but the trail records that 2"):
        verify()  # until the next anchoring, the short file is reported

    make_events(1)
    assert write_anchor(NOW + dt.timedelta(hours=2))["written"] == 1

    assert seqs(anchor_file)[1] == lost.seq and len(seqs(anchor_file)) == 3
    assert "3 anchors matched" in verify()
    assert not anchor_file.with_name(anchor_file.name + ".pending").exists()


def test_killed_before_the_commit_nothing_of_the_anchor_remains_and_anchoring_goes_on(
    anchor_file, monkeypatch
):
    make_events(2)
    write_anchor(NOW)
    make_events(2)
    real = audit_anchors._write_pending

    def write_then_die(path, record):
        real(path, record)
        raise Killed()

    with monkeypatch.context() as m:
        m.setattr(audit_anchors, "_write_pending", write_then_die)
        with pytest.raises(Killed):
            write_anchor(NOW + dt.timedelta(hours=1))
    assert len(seqs(anchor_file)) == 1
    assert AuditEvent.objects.filter(action="backoffice.audit.anchored").count() == 0  # rolled back

    assert write_anchor(NOW + dt.timedelta(hours=2))["written"] == 1
    assert "2 anchors matched" in verify()


def test_an_anchoring_that_caught_up_another_leaves_nothing_for_the_other_to_append(anchor_file, monkeypatch):
    make_events(2)
    write_anchor(NOW)
    make_events(1)
    parked = []
    with monkeypatch.context() as m:
        m.setattr(audit_anchors, "_append_committed", lambda *args: parked.append(args))
        write_anchor(NOW + dt.timedelta(hours=1))  # committed; its line not written yet
    make_events(1)
    write_anchor(NOW + dt.timedelta(hours=2))  # a second worker anchors meanwhile, catching the first up

    audit_anchors._append_committed(*parked[0])  # the first worker's append comes last

    assert len(seqs(anchor_file)) == 3 and len(set(seqs(anchor_file))) == 3
    assert "3 anchors matched" in verify()


def test_a_file_one_anchor_short_without_the_note_is_still_refused(anchor_file):
    make_events(2)
    write_anchor(NOW)
    make_events(2)
    write_anchor(NOW + dt.timedelta(hours=1))
    anchor_file.write_text(anchor_file.read_text().splitlines()[0] + "\n")  # restored from an older copy

    make_events(1)
    with pytest.raises(AnchorError, match="truncated or replaced"):
        write_anchor(NOW + dt.timedelta(hours=2))
    assert len(seqs(anchor_file)) == 1
