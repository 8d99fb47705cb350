"""The pipeline from the browser: an operator with ``backoffice.run_pipeline`` starts today's run from the
dashboard (it runs on a django-q2 worker exactly as the schedule runs it), and anyone who may view pipeline
runs watches one step by step on its page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin import site
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.audit import log_event

from .models import PipelineRun
from .step_labels import count_label, step_label

RUN_PERMISSION = "backoffice.run_pipeline"
VIEW_PERMISSION = "backoffice.view_pipelinerun"

# Steps of the pipeline whose counts name failures, and the admin list filtered to them.
FAILURE_LINKS = {
    ("autodebit", "failed"): (
        "admin:loans_autodebitattempt_changelist",
        "status__exact=failed&attempted_on={day}",
    ),
    ("dispatch", "failed"): ("admin:notifications_notificationlog_changelist", "status__exact=failed"),
}


@require_POST
def start_pipeline_view(request: HttpRequest) -> HttpResponse:
    """Queue today's pipeline, unless a run started from the dashboard is still queued or running."""
    if not request.user.has_perm(RUN_PERMISSION):
        raise PermissionDenied
    busy = PipelineRun.objects.filter(
        trigger=PipelineRun.Trigger.DASHBOARD,
        status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING],
    ).first()
    if busy is not None:
        messages.warning(request, _("A pipeline run started from the dashboard is not finished yet."))
        return redirect("operator:pipeline_run", run_id=busy.pk)
    from django_q.tasks import async_task

    with transaction.atomic():
        run = PipelineRun.objects.create(trigger=PipelineRun.Trigger.DASHBOARD, user=request.user)
        log_event("backoffice.pipeline.started", actor=request.user, obj=run, after={"trigger": run.trigger})
        transaction.on_commit(
            lambda: async_task(
                "backoffice.tasks.run_started_pipeline",
                run.pk,
                task_name=f"pipeline-run-{run.pk}",
                group="pipeline",
            )
        )
    messages.success(request, _("Today's pipeline is queued; this page follows its progress."))
    return redirect("operator:pipeline_run", run_id=run.pk)


def step_rows(run: PipelineRun) -> list[dict]:
    """Each step of ``run`` with its counts, and a link to the list behind each count that names failures."""
    # The run's day in the operators' zone, as the lists it links to read their days (a moment from the
    # database is in UTC: its own date would name the day before for a run in the small hours of Shanghai).
    day = timezone.localdate(run.as_of or run.created_at).isoformat()
    rows = []
    for name, counts in run.steps:
        items = []
        for key, value in sorted((counts or {}).items()):
            base = key.split(":", 1)[0]
            link = FAILURE_LINKS.get((name, base))
            items.append(
                {
                    "key": key,
                    "label": count_label(key),
                    "value": value,
                    "link": f"{reverse(link[0])}?{link[1].format(day=day)}" if link and value else "",
                    "is_failure": base == "failed" and bool(value),
                }
            )
        rows.append({"name": name, "label": step_label(name), "counts": items})
    return rows


def chunk_progress(run: PipelineRun) -> dict | None:
    """How many of the run's chunks finished and failed on the workers (django-q2 keeps their results)."""
    if not run.chunk_group:
        return None
    from django_q.models import Task

    done = Task.objects.filter(group=run.chunk_group).values_list("success", flat=True)
    results = list(done)
    return {
        "enqueued": run.chunks_enqueued,
        "succeeded": sum(1 for s in results if s),
        "failed": sum(1 for s in results if not s),
        "failures_url": f"{reverse('admin:django_q_failure_changelist')}?group={run.chunk_group}",
        "successes_url": f"{reverse('admin:django_q_success_changelist')}?group={run.chunk_group}",
    }


def pipeline_run_view(request: HttpRequest, run_id: int) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    run = get_object_or_404(PipelineRun.objects.select_related("user"), pk=run_id)
    context = {
        **site.each_context(request),
        "title": _("Pipeline run #%(id)s") % {"id": run.pk},
        "run": run,
        "steps": step_rows(run),
        "chunks": chunk_progress(run),
        "refresh": not run.is_finished,
    }
    return TemplateResponse(request, "backoffice/pipeline_run.html", context)
