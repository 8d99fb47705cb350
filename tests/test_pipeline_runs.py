"""The pipeline's runs are recorded step by step, and an operator with the permission starts today's run from
the dashboard and watches it."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from backoffice import jobs, tasks
from backoffice.models import PipelineRun
from backoffice.pipeline_views import step_rows
from backoffice.roles import COMPLIANCE_OFFICER, OPERATIONS
from core.models import AuditEvent
from tests.factories import make_user

pytestmark = pytest.mark.django_db

MOMENT = "2026-11-28T10:30:00+08:00"


def test_it_records_a_run_of_run_jobs_with_each_steps_counts():
    call_command("run_jobs", "--now", MOMENT, "--force", stdout=StringIO())

    run = PipelineRun.objects.get()
    assert run.trigger == PipelineRun.Trigger.COMMAND and not run.is_live
    assert run.status == PipelineRun.Status.SUCCEEDED and run.progress_percent == 100
    assert run.as_of == dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)
    assert [name for name, _counts in run.steps] == [name for name, _func in jobs.pipeline_steps()]
    assert dict(run.steps)["dispatch"] == {} and "written" in dict(run.steps)["anchor_audit"]
    assert run.started_at is not None and run.finished_at is not None


def test_it_records_a_failed_step_with_its_error_and_the_steps_before_it(monkeypatch):
    def broken(now):
        raise RuntimeError("the gateway is down")

    steps = jobs.pipeline_steps()[:1] + [("autodebit", broken)]
    monkeypatch.setattr(jobs, "pipeline_steps", lambda: steps)

    with pytest.raises(RuntimeError):
        call_command("run_jobs", "--now", MOMENT, "--force", stdout=StringIO())

    run = PipelineRun.objects.get()
    assert run.status == PipelineRun.Status.FAILED
    assert "the gateway is down" in run.error
    assert [name for name, _counts in run.steps] == ["apply_scores"]


def test_it_records_the_scheduled_run_with_its_chunks(monkeypatch):
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: None)

    tasks.run_daily_pipeline()

    run = PipelineRun.objects.get()
    assert run.trigger == PipelineRun.Trigger.SCHEDULE and run.is_live
    assert run.status == PipelineRun.Status.SUCCEEDED
    assert run.chunk_group.startswith("daily-run-")
    names = [name for name, _counts in run.steps]
    assert names[0] == "apply_scores" and names[-1] == "anchor_audit" and "chunks" in names


def test_an_operator_starts_todays_pipeline_from_the_dashboard_and_watches_it(
    client, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args))
    client.force_login(make_user("olga", group=OPERATIONS))
    assert "bo-start-pipeline" in client.get("/admin/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/backoffice/pipeline/start/")

    run = PipelineRun.objects.get()
    assert response.status_code == 302 and response.url == f"/admin/backoffice/pipeline/{run.pk}/"
    assert run.status == PipelineRun.Status.QUEUED and run.trigger == PipelineRun.Trigger.DASHBOARD
    assert queued == [("backoffice.tasks.run_started_pipeline", run.pk)]
    assert AuditEvent.objects.filter(action="backoffice.pipeline.started", object_id=str(run.pk)).exists()
    page = client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' in page and 'value="0"' in page

    tasks.run_started_pipeline(run.pk)

    run.refresh_from_db()
    assert run.status == PipelineRun.Status.SUCCEEDED and run.as_of is not None
    page = client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert 'data-step="autodebit"' in page and 'value="100"' in page


def test_a_run_started_from_the_dashboard_runs_once_even_if_its_task_runs_twice(monkeypatch):
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: None)
    run = PipelineRun.objects.create(trigger=PipelineRun.Trigger.DASHBOARD)

    first = tasks.run_started_pipeline(run.pk)
    second = tasks.run_started_pipeline(run.pk)

    assert first and second == {}
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.SUCCEEDED


def test_a_second_start_while_a_run_is_unfinished_leads_to_that_run(client, monkeypatch):
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: None)
    client.force_login(make_user("olga", group=OPERATIONS))
    busy = PipelineRun.objects.create(
        trigger=PipelineRun.Trigger.DASHBOARD, status=PipelineRun.Status.RUNNING
    )

    response = client.post("/admin/backoffice/pipeline/start/")

    assert response.url == f"/admin/backoffice/pipeline/{busy.pk}/"
    assert PipelineRun.objects.count() == 1


def test_only_a_user_with_the_permission_may_start_the_pipeline(client):
    client.force_login(make_user("carla", group=COMPLIANCE_OFFICER))

    page = client.get("/admin/").content.decode()
    response = client.post("/admin/backoffice/pipeline/start/")

    assert "bo-start-pipeline" not in page
    assert response.status_code == 403
    assert not PipelineRun.objects.exists()
    # Compliance may still watch the runs.
    run = PipelineRun.objects.create(trigger=PipelineRun.Trigger.SCHEDULE)
    assert client.get(f"/admin/backoffice/pipeline/{run.pk}/").status_code == 200


def test_the_dashboard_shows_the_last_run_and_links_its_failures(client):
    PipelineRun.objects.create(
        trigger=PipelineRun.Trigger.SCHEDULE,
        status=PipelineRun.Status.SUCCEEDED,
        as_of=dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC),
        steps=[["autodebit", {"claimed": 3, "failed": 2, "succeeded": 1}], ["dispatch", {"sent": 4}]],
    )
    client.force_login(make_user("olga", group=OPERATIONS))

    page = client.get("/admin/").content.decode()

    assert 'data-step="autodebit"' in page
    assert "/admin/loans/autodebitattempt/?status__exact=failed&amp;attempted_on=2026-11-28" in page
    assert '<span title="sent">Sent: 4</span>' in page


def test_a_failure_link_names_the_runs_day_in_the_operators_zone(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    run = PipelineRun(
        as_of=dt.datetime(2026, 11, 30, 17, 30, tzinfo=dt.UTC),  # 01:30 on 1 December in Shanghai
        steps=[["autodebit", {"failed": 2}]],
    )

    [row] = step_rows(run)

    assert "attempted_on=2026-12-01" in row["counts"][0]["link"]
