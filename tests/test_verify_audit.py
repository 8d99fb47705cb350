from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.audit_anchors import write_anchor
from core.models import AuditEvent
from tests.factories_audit import make_events, rewind_trail, rewrite_trail, tamper

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def anchor_file(settings, tmp_path):
    settings.AUDIT_ANCHOR_PATH = tmp_path / "anchors" / "audit-anchor.jsonl"
    return settings.AUDIT_ANCHOR_PATH


def verify() -> str:
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
    events = make_events(3)
    write_anchor(NOW)
    anchored = AuditEvent.objects.order_by("-seq").first()
    # Rewrite the last event and recompute its hash, the hashes after it and the head: the chain alone looks valid.
    rewrite_trail(events[-1].seq, {"v": "forged"})
    with pytest.raises(CommandError) as exc:
        verify()
    assert f"seq {anchored.seq} (id {anchored.pk})" in str(exc.value) and "anchor" in str(exc.value)


@pytest.mark.django_db
def test_a_truncated_trail_is_caught_by_the_anchor(anchor_file):
    events = make_events(3)
    write_anchor(NOW)
    rewind_trail(events[-2].seq)
    with pytest.raises(CommandError) as exc:
        verify()
    assert f"seq {events[-1].seq + 1} is missing" in str(exc.value)


@pytest.mark.django_db
def test_dropped_triggers_fail_verification(anchor_file):
    from django.db import connection

    from core.audit_triggers import remove_audit_triggers

    make_events(1)
    write_anchor(NOW)
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

    assert PIPELINE[-1] == ("anchor_audit", "core.audit_anchors.write_anchor")


# --- The tail: what happened after the last anchor, and the anchor file itself -------------------------------


def fake_step(n: int):
    def step(now):
        make_events(n, action="tests.step.ran")
        return {"events": n}

    return step


@pytest.mark.django_db
def test_removing_the_events_of_the_last_pipeline_step_is_caught(anchor_file, monkeypatch):
    from backoffice import jobs

    make_events(2)
    write_anchor(NOW)
    monkeypatch.setattr(jobs, "pipeline_steps", lambda: [("one", fake_step(2)), ("two", fake_step(3))])
    jobs.run_pipeline(NOW)
    anchors = [json.loads(line) for line in anchor_file.read_text().splitlines()]
    heads = [a["seq"] for a in anchors]
    assert len(heads) == 3 and heads[-1] == AuditEvent.objects.order_by("-seq").first().seq
    # The attacker removes what step two wrote and rewinds the head to the anchor before it.
    rewind_trail(heads[-2])
    with pytest.raises(CommandError) as exc:
        verify()
    assert f"seq {heads[-1]} is missing" in str(exc.value)


@pytest.mark.django_db
def test_an_import_is_anchored_once_it_is_committed(
    anchor_file, tmp_path, django_capture_on_commit_callbacks
):
    make_events(1)
    write_anchor(NOW)
    source = tmp_path / "tiers.csv"
    source.write_text(
        "code,name,min_score,max_score,risk_level,grace_period_days,max_contacts_per_week,channel_order\n"
        "Z,Tier Z,0,99,low,7,2,sms\n",
        encoding="utf-8",
    )
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "import", "loans.resources.CreditTierResource", str(source), "--no-input", stdout=StringIO()
        )
    completed = AuditEvent.objects.get(action="backoffice.import.completed")
    last = json.loads(anchor_file.read_text().splitlines()[-1])
    assert last["seq"] > completed.seq
    assert AuditEvent.objects.get(seq=last["seq"]).action == "backoffice.audit.anchored"
    rewind_trail(completed.seq - 1)
    with pytest.raises(CommandError) as exc:
        verify()
    assert "missing" in str(exc.value)


@pytest.mark.django_db
def test_an_export_is_anchored_once_it_is_committed(
    anchor_file, tmp_path, django_capture_on_commit_callbacks
):
    make_events(1)
    write_anchor(NOW)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("export_log", "audit", "--output", str(tmp_path / "audit.csv"), stdout=StringIO())
    completed = AuditEvent.objects.get(action="backoffice.export.completed")
    last = json.loads(anchor_file.read_text().splitlines()[-1])
    assert last["seq"] == completed.seq + 1


@pytest.mark.django_db
def test_housekeeping_anchors_the_head_every_hour(anchor_file):
    from core.housekeeping import run_housekeeping

    make_events(2)
    assert run_housekeeping(NOW)["anchors_written"] == 1
    head = AuditEvent.objects.order_by("-seq").first()
    assert json.loads(anchor_file.read_text().splitlines()[-1])["seq"] == head.seq
    assert run_housekeeping(NOW + dt.timedelta(hours=1))["anchors_written"] == 0  # nothing new to anchor


@pytest.mark.django_db
def test_a_missing_anchor_file_fails(anchor_file):
    make_events(3)
    assert not anchor_file.exists()
    with pytest.raises(CommandError) as exc:
        verify()
    assert "anchor file" in str(exc.value) and "missing" in str(exc.value)
    assert "--init-anchors" in str(exc.value)


@pytest.mark.django_db
def test_a_deleted_anchor_file_fails_and_is_not_silently_started_again(anchor_file):
    from core.audit_anchor_file import AnchorError

    make_events(2)
    write_anchor(NOW)
    anchor_file.unlink()
    make_events(1)
    with pytest.raises(AnchorError, match="missing"):
        write_anchor(NOW + dt.timedelta(hours=1))
    assert not anchor_file.exists()
    with pytest.raises(CommandError, match="missing"):
        verify()


@pytest.mark.django_db
def test_a_shortened_anchor_file_fails(anchor_file):
    from core.audit_anchor_file import AnchorError

    make_events(2)
    write_anchor(NOW)
    make_events(2)
    write_anchor(NOW + dt.timedelta(hours=1))
    first_line = anchor_file.read_text().splitlines()[0]
    anchor_file.write_text(first_line + "\n")  # restored from an older copy, or cut
    with pytest.raises(CommandError) as exc:
        verify()
    assert "holds 1 anchors but the trail records that 2 were written" in str(exc.value)
    make_events(1)
    with pytest.raises(AnchorError, match="truncated or replaced"):
        write_anchor(NOW + dt.timedelta(hours=2))


@pytest.mark.django_db
def test_an_anchor_file_ahead_of_the_trail_fails(anchor_file):
    make_events(2)
    write_anchor(NOW)
    anchor_file.write_text(
        anchor_file.read_text() + json.dumps({"seq": 999, "hash": "0" * 64, "at": NOW.isoformat()}) + "\n"
    )
    with pytest.raises(CommandError) as exc:
        verify()
    assert "seq 999 is missing" in str(exc.value)


@pytest.mark.django_db
def test_the_operator_initialises_an_anchor_file_on_purpose_and_it_is_audited(anchor_file):
    make_events(2)
    write_anchor(NOW)
    anchor_file.write_text("")  # lost
    with pytest.raises(CommandError):
        verify()
    out = StringIO()
    call_command("verify_audit", "--init-anchors", "--reason", "disk replaced", stdout=out)
    assert "Anchor file initialised" in out.getvalue()
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "backoffice.audit.anchors_initialised"
    assert event.actor.startswith("command:verify_audit")
    assert event.after["reason"] == "disk replaced" and event.after["previous_file"]["anchors"] == 0
    kept = list(anchor_file.parent.glob(f"{anchor_file.name}.replaced-*"))
    assert len(kept) == 1 and event.after["previous_file"]["moved_to"] == kept[0].name
    assert [json.loads(line)["seq"] for line in anchor_file.read_text().splitlines()] == [event.seq]
    assert "anchors matched" in verify()
    make_events(1)
    assert write_anchor(NOW + dt.timedelta(hours=1))["written"] == 1
    assert "2 anchors matched" in verify()


@pytest.mark.django_db
def test_initialising_refuses_a_broken_chain(anchor_file):
    events = make_events(3)
    tamper("UPDATE backoffice_auditevent SET after = %s WHERE id = %s", ['{"v": 999}', events[1].pk])
    with pytest.raises(CommandError, match="chain itself is broken"):
        call_command("verify_audit", "--init-anchors", stdout=StringIO())
    assert not anchor_file.exists()


@pytest.mark.django_db
def test_the_pipelines_last_step_fails_loudly_on_a_broken_anchor_file(anchor_file):
    from core.audit_anchor_file import AnchorError

    make_events(1)
    call_command("run_jobs", "--now", NOW.isoformat(), stdout=StringIO())
    anchor_file.unlink()
    make_events(1)
    with pytest.raises(AnchorError):
        call_command("run_jobs", "--now", NOW.isoformat(), stdout=StringIO())


@pytest.mark.django_db
def test_a_long_anchor_file_is_read_from_its_end_and_a_line_cut_from_its_middle_is_still_caught(anchor_file):
    for hour in range(40):
        make_events(1)
        assert write_anchor(NOW + dt.timedelta(hours=hour))["written"] == 1
    assert anchor_file.stat().st_size > 4096
    assert "40 anchors matched" in verify()
    lines = anchor_file.read_text().splitlines()
    anchor_file.write_text("\n".join(lines[:10] + lines[11:]) + "\n")
    with pytest.raises(CommandError, match="holds 39 anchors but the trail records that 40"):
        verify()
