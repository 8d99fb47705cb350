"""The project's own model: the runs of the daily pipeline that composes the apps."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class PipelineRun(models.Model):
    """One run of the daily pipeline (the schedule, ``run_jobs`` or an operator's button on the dashboard):
    what each step did, how far it got, and how it ended. Written as the run goes, so a page can show progress.

    ``steps`` lists ``[step name, counts it returned]`` in the order the steps ran (a list: PostgreSQL's jsonb
    keeps no key order). A fanned-out run also
    names its django-q2 ``chunk_group`` and how many chunks it enqueued; the chunks report there."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", _("Schedule")
        COMMAND = "command", _("Command line")
        DASHBOARD = "dashboard", _("Dashboard")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    trigger = models.CharField(_("started by"), max_length=16, choices=Trigger.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="pipeline_runs",
        verbose_name=_("operator"),
    )
    as_of = models.DateTimeField(_("as of"), null=True, blank=True)
    is_live = models.BooleanField(
        _("live"), default=True, help_text=_("Run by the real clock, not as of a moment.")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    steps = models.JSONField(_("steps"), default=list, blank=True)
    steps_total = models.PositiveSmallIntegerField(_("steps to run"), default=0)
    chunk_group = models.CharField(_("chunk group"), max_length=100, blank=True)
    chunks_enqueued = models.PositiveIntegerField(_("chunks enqueued"), default=0)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("pipeline run")
        verbose_name_plural = _("pipeline runs")
        default_permissions = ("view",)
        permissions = [("run_pipeline", "Can start today's pipeline")]
        indexes = [models.Index(fields=["-created_at"], name="pipelinerun_created_idx")]

    def __str__(self):
        return f"pipeline run #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def progress_percent(self) -> int:
        """Share of the steps done (a finished run is 100)."""
        if self.is_finished:
            return 100
        if not self.steps_total:
            return 0
        return min(99, round(100 * len(self.steps) / self.steps_total))
