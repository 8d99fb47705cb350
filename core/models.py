"""What every app shares: the append-only, hash-chained audit trail, and the background exports, imports and
audit verifications.

The tables keep the names they had when these models lived in the project package (``backoffice_*``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

GENESIS_HASH = "0" * 64

# The audit trail's own records of the anchors it wrote (``core.audit_anchors``).
ANCHORED = "backoffice.audit.anchored"
ANCHORS_INITIALISED = "backoffice.audit.anchors_initialised"
ANCHOR_ACTIONS = (ANCHORED, ANCHORS_INITIALISED)


class AuditEvent(models.Model):
    """One recorded decision or change. Rows are never updated or deleted (database triggers refuse it).

    ``hash`` = SHA-256 over ``prev_hash`` and the canonical JSON of the event (see ``core.audit``).
    """

    seq = models.BigIntegerField(_("sequence"), unique=True)
    at = models.DateTimeField(_("at"), db_index=True)
    actor = models.CharField(
        _("actor"), max_length=150, help_text=_("A user name, or job:<name> for a scheduled job.")
    )
    action = models.CharField(_("action"), max_length=100, db_index=True)
    object_type = models.CharField(_("object type"), max_length=100, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"), null=True, blank=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64)
    # Not indexed: nothing looks an event up by its hash (the chain is walked in seq order), two events can
    # never share one (each hash covers its own seq), and every event paid for an insert at a random place
    # of the index (core.0008).
    hash = models.CharField(_("hash"), max_length=64)

    class Meta:
        db_table = "backoffice_auditevent"
        ordering = ["seq"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit trail")
        permissions = [("export_auditevent", "Can export the audit trail")]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            # The last anchors written, found at once: without it the newest events were walked back one by one
            # to the last anchor (every import's or export's end read the day's millions of events, 5 s at
            # 1,250,000). Only anchors are in it, so nothing else pays for it.
            models.Index(
                fields=["seq"], condition=models.Q(action__in=ANCHOR_ACTIONS), name="audit_anchor_seq_idx"
            ),
        ]

    def __str__(self):
        return f"#{self.seq} {self.action}"


class AuditChainHead(models.Model):
    """The single row writers lock (SELECT ... FOR UPDATE) so concurrent transactions never fork the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        db_table = "backoffice_auditchainhead"
        verbose_name = _("audit chain head")
        default_permissions = ()

    def __str__(self):
        return f"head #{self.seq}"


class ExportJob(models.Model):
    """One export of the notification log, the audit trail or the strategy outcomes, run in the request or as a background task.

    The file lives under ``settings.EXPORT_ROOT`` (never under static files) beside its ``.manifest.json``;
    only its owner, or a user allowed to export that kind, downloads it."""

    class Kind(models.TextChoices):
        NOTIFICATIONS = "notifications", _("Notification log")
        AUDIT = "audit", _("Audit trail")
        OUTCOMES = "outcomes", _("Strategy outcomes")

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "XLSX"
        JSON = "json", "JSON"

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="export_jobs",
        verbose_name=_("requested by"),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    format = models.CharField(_("format"), max_length=8, choices=Format.choices)
    filters = models.JSONField(_("filters"), default=dict, blank=True)
    is_masked = models.BooleanField(_("personal data masked"), default=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows_done = models.PositiveBigIntegerField(_("rows written"), default=0)
    total_estimate = models.PositiveBigIntegerField(_("rows expected"), null=True, blank=True)
    file_path = models.CharField(
        _("file"), max_length=500, blank=True, help_text=_("Relative to EXPORT_ROOT.")
    )
    file_sha256 = models.CharField(_("file SHA-256"), max_length=64, blank=True)
    manifest_sha256 = models.CharField(_("manifest SHA-256"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        db_table = "backoffice_exportjob"
        ordering = ["-created_at", "-id"]
        verbose_name = _("export")
        verbose_name_plural = _("exports")
        default_permissions = ("view",)
        # Without it a user sees and downloads their own exports only.
        permissions = [("access_all_exports", "Can see and download every user's exports")]
        indexes = [models.Index(fields=["user", "-created_at"], name="exportjob_user_created_idx")]

    def __str__(self):
        return f"{self.kind} {self.format} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class ImportJob(models.Model):
    """One admin import of a large file, run as a background django-q2 task (``core.imports.jobs``).

    The uploaded file is stored under ``settings.IMPORT_ROOT`` (never under static files) with its SHA-256; a
    successful dry run can be confirmed, which queues the real import of the same stored file as a new job
    (``confirmed_from``). Only the owner, or a user with the resource's import permission, sees a job."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    #: At most this many errors are stored on the job; ``error_count`` keeps the full number.
    MAX_STORED_ERRORS = 500

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="import_jobs",
        verbose_name=_("requested by"),
    )
    resource = models.CharField(
        _("resource"), max_length=200, help_text=_("Dotted path of the resource class.")
    )
    file_name = models.CharField(_("file name"), max_length=255)
    file_path = models.CharField(_("stored file"), max_length=500, help_text=_("Relative to IMPORT_ROOT."))
    file_sha256 = models.CharField(_("file SHA-256"), max_length=64)
    format = models.CharField(_("format"), max_length=100)
    is_dry_run = models.BooleanField(_("dry run"), default=True)
    confirmed_from = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="confirmation",
        verbose_name=_("confirms the dry run"),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveBigIntegerField(_("rows in the file"), null=True, blank=True)
    rows_done = models.PositiveBigIntegerField(_("rows done"), default=0)
    rows_new = models.PositiveBigIntegerField(_("new"), default=0)
    rows_updated = models.PositiveBigIntegerField(_("updated"), default=0)
    rows_skipped = models.PositiveBigIntegerField(_("unchanged"), default=0)
    error_count = models.PositiveBigIntegerField(_("errors"), default=0)
    errors = models.JSONField(
        _("errors by line"),
        default=list,
        blank=True,
        help_text=_("[{line, column, message}], the first ones."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        db_table = "backoffice_importjob"
        ordering = ["-created_at", "-id"]
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        default_permissions = ("view",)
        indexes = [models.Index(fields=["user", "-created_at"], name="importjob_user_created_idx")]

    def __str__(self):
        return f"import {self.file_name} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def may_be_confirmed(self) -> bool:
        """A dry run that found no error and has not been confirmed yet."""
        return (
            self.is_dry_run
            and self.status == self.Status.SUCCEEDED
            and not ImportJob.objects.filter(confirmed_from=self).exists()
        )


class AuditVerification(models.Model):
    """One check of the audit trail from the browser: the same walk as ``manage.py verify_audit``, run in the
    request for a small trail or as a django-q2 task for a large one, with its progress and its verdict."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        INTACT = "intact", _("Intact")
        BROKEN = "broken", _("Broken")
        FAILED = "failed", _("Failed")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="audit_verifications",
        verbose_name=_("requested by"),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    events_total = models.PositiveBigIntegerField(_("events in the trail"), default=0)
    events_checked = models.PositiveBigIntegerField(_("events verified"), default=0)
    anchors_checked = models.PositiveIntegerField(_("anchors matched"), default=0)
    broken_seq = models.BigIntegerField(_("first broken event"), null=True, blank=True)
    problem = models.TextField(_("problem"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        db_table = "backoffice_auditverification"
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit verification")
        verbose_name_plural = _("audit verifications")
        default_permissions = ()

    def __str__(self):
        return f"audit verification #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.INTACT, self.Status.BROKEN, self.Status.FAILED)

    @property
    def progress_percent(self) -> int:
        if self.is_finished:
            return 100
        if not self.events_total:
            return 0
        return min(99, round(100 * self.events_checked / self.events_total))


class MonthArchive(models.Model):
    """A month of a partitioned table detached to an archive file (``manage.py archive_month``): what the file
    held when it was written, so ``verify_audit`` can check the file and the chain's continuity through it
    (``first_seq`` to ``last_seq`` for the audit trail). Recorded in the audit trail too (its manifest)."""

    class Kind(models.TextChoices):
        AUDIT = "audit", _("Audit trail")
        NOTIFICATIONS = "notifications", _("Notification log")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    month = models.DateField(_("month"), help_text=_("The month's first day (UTC)."))
    file_path = models.CharField(_("archive file"), max_length=500)
    file_sha256 = models.CharField(_("file SHA-256"), max_length=64)
    manifest_sha256 = models.CharField(_("manifest SHA-256"), max_length=64)
    rows = models.PositiveBigIntegerField(_("rows"))
    first_seq = models.BigIntegerField(_("first event"), null=True, blank=True)
    last_seq = models.BigIntegerField(_("last event"), null=True, blank=True)
    first_hash = models.CharField(_("first hash"), max_length=64, blank=True)
    last_hash = models.CharField(_("last hash"), max_length=64, blank=True)
    archived_at = models.DateTimeField(_("archived at"))
    archived_by = models.CharField(_("archived by"), max_length=150)

    class Meta:
        ordering = ["kind", "month"]
        verbose_name = _("archived month")
        verbose_name_plural = _("archived months")
        default_permissions = ("view",)
        constraints = [models.UniqueConstraint(fields=["kind", "month"], name="month_archive_unique")]

    def __str__(self):
        return f"{self.kind} {self.month:%Y-%m}"
