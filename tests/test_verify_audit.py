from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backoffice.audit import write_anchor
from backoffice.models import AuditEvent
from tests.factories_audit import make_events, tamper

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def anchor_file(settings, tmp_path):
    settings.AUDIT_ANCHOR_PATH = tmp_path / "anchors" / "audit-anchor.jsonl"
    return settings.AUDIT_ANCHOR_PATH


def verify() -> str:
    from io import StringIO

    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_passes_naming_the_count_of_an_untouched_trail(anchor_file):
    make_events(5)
    write_anchor(NOW)
    total = AuditEvent.objects.count()
    assert f"{total} events verified, 1 anchors matched" in verify()


@pytest.mark.django_db
def test_it_names_the_first_event_changed_behind_the_applications_back(anchor_file):
    events = make_events(5)
    victim = events[2]
    tamper("UPDATE backoffice_auditevent SET after = %s WHERE id = %s", ['{"v": 999}', victim.pk])
    with pytest.raises(CommandError) as exc:
        verify()
    assert exc.value.returncode != 0
    assert f"seq {victim.seq} (id {victim.pk})" in str(exc.value)
    assert "content" in str(exc.value)


@pytest.mark.django_db
def test_it_names_the_gap_left_by_a_deleted_event(anchor_file):
    events = make_events(4)
    tamper("DELETE FROM backoffice_auditevent WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError) as exc:
        verify()
    assert f"seq {events[2].seq}" in str(exc.value) and f"expected seq {events[1].seq}" in str(exc.value)


@pytest.mark.django_db
def test_a_rewritten_trail_with_recomputed_hashes_no_longer_matches_its_anchor(anchor_file):
    from backoffice.audit import compute_hash, event_payload

    events = make_events(3)
    write_anchor(NOW)
    last = events[-1]
    # Rewrite the last event and recompute its hash and the head: the chain alone looks valid again.
    payload = event_payload(
        seq=last.seq,
        at=last.at,
        actor=last.actor,
        action=last.action,
        object_type=last.object_type,
        object_id=last.object_id,
        before=last.before,
        after={"v": "forged"},
    )
    forged = compute_hash(last.prev_hash, payload)
    tamper(
        "UPDATE backoffice_auditevent SET after = %s, hash = %s WHERE id = %s",
        ['{"v": "forged"}', forged, last.pk],
    )
    tamper("UPDATE backoffice_auditchainhead SET hash = %s WHERE id = 1", [forged])
    with pytest.raises(CommandError) as exc:
        verify()
    assert f"seq {last.seq} (id {last.pk})" in str(exc.value) and "anchor" in str(exc.value)


@pytest.mark.django_db
def test_a_truncated_trail_is_caught_by_the_anchor(anchor_file):
    events = make_events(3)
    write_anchor(NOW)
    tamper("DELETE FROM backoffice_auditevent WHERE id = %s", [events[-1].pk])
    tamper(
        "UPDATE backoffice_auditchainhead SET seq = %s, hash = %s WHERE id = 1",
        [events[-2].seq, events[-2].hash],
    )
    with pytest.raises(CommandError) as exc:
        verify()
    assert f"seq {events[-1].seq} is missing" in str(exc.value)


@pytest.mark.django_db
def test_dropped_triggers_fail_verification(anchor_file):
    from django.db import connection

    from backoffice.audit import remove_audit_triggers

    make_events(1)
    remove_audit_triggers(connection)
    with pytest.raises(CommandError) as exc:
        verify()
    assert "triggers missing" in str(exc.value)


@pytest.mark.django_db
def test_the_anchor_job_appends_the_head_once_per_change(anchor_file):
    make_events(2)
    assert write_anchor(NOW)["written"] == 1
    assert write_anchor(NOW + dt.timedelta(days=1))["written"] == 0
    make_events(1)
    assert write_anchor(NOW + dt.timedelta(days=2))["written"] == 1
    lines = [json.loads(line) for line in anchor_file.read_text().splitlines()]
    head = AuditEvent.objects.order_by("-seq").first()
    assert [sorted(line) for line in lines] == [["at", "hash", "seq"]] * 2
    assert lines[-1]["seq"] == head.seq and lines[-1]["hash"] == head.hash


@pytest.mark.django_db
def test_the_anchor_job_is_the_last_step_of_the_pipeline():
    from backoffice.jobs import PIPELINE

    assert PIPELINE[-1] == ("anchor_audit", "backoffice.audit.write_anchor")
