"""Collections: the escalation ladder per tier, cases, the steps they ran, call tasks, promises, agencies, legal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loans.models import CreditTier, Customer, Loan, PolicyVersion
from loans.schedule import DpdBucket, days_past_due, days_past_due_q, dpd_bucket, local_day
from notifications.choices import Kind

MESSAGING_ACTIONS = ("sms", "email", "push")


class EscalationStep(models.Model):
    """One rung of a tier's ladder: from ``min_dpd`` days past due, do ``action`` (once per case)."""

    class Action(models.TextChoices):
        SMS = "sms", _("SMS")
        EMAIL = "email", _("Email")
        PUSH = "push", _("App push")
        CALL_TASK = "call_task", _("Call task for a collector")
        AGENCY = "agency", _("Place with a collection agency")
        LEGAL = "legal", _("Refer to legal")

    tier = models.ForeignKey(
        CreditTier, on_delete=models.CASCADE, related_name="escalation_steps", verbose_name=_("tier")
    )
    min_dpd = models.PositiveSmallIntegerField(
        _("from days past due"), validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    stage = models.CharField(
        _("stage"), max_length=32, help_text=_("A free label: early, firm, call, agency, legal.")
    )
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    kind = models.CharField(
        _("template kind"),
        max_length=32,
        choices=Kind.choices,
        blank=True,
        help_text=_("For SMS, email and push."),
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        ordering = ["tier", "min_dpd", "action"]
        verbose_name = _("escalation step")
        verbose_name_plural = _("escalation steps")
        permissions = [
            ("import_escalationstep", "Can import escalation steps"),
            ("export_escalationstep", "Can export escalation steps"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tier", "min_dpd", "action"], name="escalation_step_unique_tier_dpd_action"
            ),
            models.CheckConstraint(condition=Q(min_dpd__gte=1), name="escalation_step_min_dpd_positive"),
            models.CheckConstraint(
                condition=~Q(action__in=MESSAGING_ACTIONS) | ~Q(kind=""),
                name="escalation_step_message_has_kind",
            ),
        ]

    def __str__(self):
        return f"{self.tier_id}: DPD {self.min_dpd}+ {self.action} ({self.stage})"

    @property
    def is_messaging(self) -> bool:
        return self.action in MESSAGING_ACTIONS

    def clean(self):
        super().clean()
        if self.is_messaging and not self.kind:
            self.kind = Kind.OVERDUE
        if not self.is_messaging:
            self.kind = ""


class CollectionCaseQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status=CollectionCase.Status.OPEN)

    def frozen(self):
        return self.open().filter(is_frozen=True)


def past_due_between_q(at: dt.datetime, first: int, last: int | None, prefix: str = "") -> Q:
    """Open cases ``first`` to ``last`` (None: no end) days past due at the moment ``at``, each in its
    customer's calendar, as a condition on ``oldest_due_date`` (``prefix``: the path to the case from the
    queried model, e.g. ``case__``). A closed case is in no bucket: its loan is no longer past due."""
    return Q(**{f"{prefix}status": "open"}) & days_past_due_q(
        at, first, last, date_field=f"{prefix}oldest_due_date", zone_field=f"{prefix}loan__customer__timezone"
    )


def frozen_loan_ids() -> models.QuerySet:
    """Loans whose automatic contact is frozen by a legal referral (for planners to exclude)."""
    return CollectionCase.objects.frozen().values("loan_id")


class CollectionCase(models.Model):
    """An overdue loan being worked. At most one open case per loan; a closed case is history."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    class CloseReason(models.TextChoices):
        NONE = "", _("—")
        PAID = "paid", _("Overdue amount paid")
        LOAN_CLOSED = "loan_closed", _("Loan no longer active")

    loan = models.ForeignKey(
        Loan, on_delete=models.PROTECT, related_name="collection_cases", verbose_name=_("loan")
    )
    tier = models.ForeignKey(
        CreditTier,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("ladder of tier"),
    )
    # The policy version whose ladder the case follows: the one current when it opened (or its customer's arm),
    # kept until it closes unless an operator migrates it (``strategy.versions.migrate_cases``).
    policy_version = models.ForeignKey(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("policy version"),
    )
    stage = models.CharField(_("stage"), max_length=32, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(_("opened at"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    close_reason = models.CharField(
        _("close reason"), max_length=16, choices=CloseReason.choices, blank=True, default=""
    )
    # Days past due are counted from this date when read (``days_past_due``), never stored: nothing has to be
    # written each day for them to grow. A payment of the oldest instalment past due moves it.
    oldest_due_date = models.DateField(
        _("oldest due date"),
        help_text=_("Due date of the oldest instalment past due: days past due count from it."),
    )
    amount_overdue = models.DecimalField(
        _("amount overdue"), max_digits=14, decimal_places=2, default=Decimal("0")
    )
    paused_until = models.DateField(
        _("paused until"),
        null=True,
        blank=True,
        help_text=_("A promise to pay is pending: the ladder waits."),
    )
    is_frozen = models.BooleanField(_("frozen (legal)"), default=False)
    broken_promises = models.PositiveSmallIntegerField(_("broken promises"), default=0)
    last_conversation_at = models.DateTimeField(_("last conversation"), null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = CollectionCaseQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        verbose_name = _("collection case")
        verbose_name_plural = _("collection cases")
        permissions = [
            ("place_with_agency", "Can place cases with a collection agency"),
            ("refer_to_legal", "Can refer cases to legal"),
            ("migrate_case_policy", "Can move cases onto their tier's current policy version"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["loan"], condition=Q(status="open"), name="collection_case_one_open_per_loan"
            ),
            models.CheckConstraint(
                condition=Q(status="open", closed_at__isnull=True)
                | Q(status="closed", closed_at__isnull=False),
                name="collection_case_closed_has_time",
            ),
        ]
        indexes = [models.Index(fields=["status", "loan"], name="case_status_loan_idx")]

    def __str__(self):
        return f"Case {self.pk} · {self.loan_id}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    @property
    def is_paused(self) -> bool:
        return self.paused_until is not None

    def days_past_due(self, on: dt.date | dt.datetime) -> int:
        """Days past due on ``on``, counted from ``oldest_due_date`` by the loan book's rule
        (``loans.schedule.days_past_due``). A moment is read in the customer's calendar (select
        ``loan__customer`` in lists) and a closed case's count stops at its close; a date is taken as the
        customer's day as it is."""
        if isinstance(on, dt.datetime):
            if self.closed_at is not None:
                on = min(on, self.closed_at)
            on = local_day(on, self.loan.customer.timezone)
        return days_past_due(self.oldest_due_date, on)

    def dpd_bucket(self, on: dt.date | dt.datetime) -> DpdBucket:
        return dpd_bucket(self.days_past_due(on))


class CaseStepRun(models.Model):
    """A step of the ladder done (or deliberately skipped) for a case: each step runs once per case."""

    class Result(models.TextChoices):
        PERFORMED = "performed", _("Performed")
        SKIPPED = "skipped", _("Skipped")

    class SkipReason(models.TextChoices):
        NONE = "", _("—")
        SUPERSEDED = "superseded", _("Passed over: a higher step was reached the same day")
        OPTED_OUT = "opted_out", _("Customer opted out of calls")

    case = models.ForeignKey(
        CollectionCase, on_delete=models.CASCADE, related_name="step_runs", verbose_name=_("case")
    )
    step = models.ForeignKey(
        EscalationStep,
        null=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        verbose_name=_("escalation step"),
    )
    # What the step was when it ran: an edited or deleted step does not rewrite history.
    min_dpd = models.PositiveSmallIntegerField(_("from days past due"))
    stage = models.CharField(_("stage"), max_length=32)
    action = models.CharField(_("action"), max_length=16, choices=EscalationStep.Action.choices)
    result = models.CharField(_("result"), max_length=16, choices=Result.choices, default=Result.PERFORMED)
    detail = models.CharField(_("detail"), max_length=200, choices=SkipReason.choices, blank=True)
    dpd = models.PositiveIntegerField(_("days past due when run"))
    run_at = models.DateTimeField(_("run at"))

    class Meta:
        ordering = ["case", "min_dpd", "id"]
        verbose_name = _("step run")
        verbose_name_plural = _("step runs")
        constraints = [models.UniqueConstraint(fields=["case", "step"], name="case_step_run_once")]

    def __str__(self):
        return f"{self.case_id}: {self.action} @ DPD {self.dpd} ({self.result})"


class CallTaskQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status=CallTask.Status.OPEN)

    def past_service_level(self, now: dt.datetime, service_level: dt.timedelta):
        """Open tasks not worked by their deadline at ``now`` (the rows ``CallTask.overdue_by`` flags)."""
        return self.open().filter(scheduled_for__lt=now - service_level)


class CallTask(models.Model):
    """A call a collector has to make: the collectors' queue."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        DONE = "done", _("Done")
        CANCELLED = "cancelled", _("Cancelled")

    class Outcome(models.TextChoices):
        NONE = "", _("—")
        REACHED = "reached", _("Reached")
        NO_ANSWER = "no_answer", _("No answer")
        VOICEMAIL = "voicemail", _("Voicemail left")
        WRONG_NUMBER = "wrong_number", _("Wrong number")
        PROMISE_TO_PAY = "promise_to_pay", _("Promise to pay")
        DISPUTE = "dispute", _("Dispute")
        REFUSED = "refused", _("Refused to pay")
        STOP_CALLING = "stop_calling", _("Asked us to stop calling")

    class CancelReason(models.TextChoices):
        NONE = "", _("—")
        PAID = "paid", _("Overdue amount paid")
        DO_NOT_CONTACT = "do_not_contact", _("Customer must not be contacted")
        OPTED_OUT = "opted_out", _("Customer opted out of calls")
        DISPUTE = "dispute", _("Customer disputes the debt")
        LEGAL = "legal", _("Referred to legal")
        TIER_CHANGED = "tier_changed", _("The new tier's ladder calls later")

    # A conversation took place: no further call about the loans it covered for the policy's pause.
    CONVERSATION_OUTCOMES = (
        Outcome.REACHED,
        Outcome.PROMISE_TO_PAY,
        Outcome.DISPUTE,
        Outcome.REFUSED,
        Outcome.STOP_CALLING,
    )
    # Nobody answered: another attempt is scheduled within the limits.
    RETRY_OUTCOMES = (Outcome.NO_ANSWER, Outcome.VOICEMAIL)

    case = models.ForeignKey(
        CollectionCase, on_delete=models.CASCADE, related_name="call_tasks", verbose_name=_("case")
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="call_tasks",
        verbose_name=_("collector"),
    )
    priority = models.BigIntegerField(_("priority"), default=0, help_text=_("Higher is called first."))
    policy_version = models.ForeignKey(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("policy version"),
    )
    scheduled_for = models.DateTimeField(_("call from"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices, blank=True, default="")
    note = models.TextField(_("note"), blank=True)
    cancel_reason = models.CharField(
        _("cancel reason"), max_length=32, choices=CancelReason.choices, blank=True, default=""
    )
    created_at = models.DateTimeField(_("created at"))
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("completed by"),
    )

    objects = CallTaskQuerySet.as_manager()

    class Meta:
        ordering = ["-priority", "scheduled_for", "id"]
        verbose_name = _("call task")
        verbose_name_plural = _("call tasks")
        permissions = [
            ("view_all_calltasks", "Can see every collector's call tasks"),
            ("record_call_outcome", "Can record the outcome of a call"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="done") | ~Q(outcome=""), name="call_task_done_has_outcome"
            ),
        ]
        indexes = [
            models.Index(
                fields=["assigned_to", "-priority"], condition=Q(status="open"), name="call_task_queue_idx"
            ),
            models.Index(fields=["case", "scheduled_for"], name="call_task_case_sched_idx"),
        ]

    def __str__(self):
        return _("Call for case %(case)s (%(status)s)") % {
            "case": self.case_id,
            "status": self.get_status_display(),
        }

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    def service_level_deadline(self, service_level: dt.timedelta) -> dt.datetime:
        """When the task should have been worked: ``service_level`` after it fell due (``scheduled_for``)."""
        return self.scheduled_for + service_level

    def overdue_by(self, now: dt.datetime, service_level: dt.timedelta) -> dt.timedelta | None:
        """How far past its deadline the task is at ``now``; None when it is worked, cancelled or on time
        (``CallTaskQuerySet.past_service_level`` selects the same tasks)."""
        if not self.is_open:
            return None
        late = now - self.service_level_deadline(service_level)
        return late if late > dt.timedelta(0) else None


class CallAttempt(models.Model):
    """A call actually made (whatever came of it), at the moment it was made: what the call limits and the weekly
    contact cap count. A call is about its task's loan and may cover other loans of the same customer; each of
    them counts it, and a conversation blocks further calls about each."""

    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="call_attempts", verbose_name=_("customer")
    )
    task = models.ForeignKey(
        CallTask,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="attempts",
        verbose_name=_("task"),
    )
    made_at = models.DateTimeField(_("made at"))
    outcome = models.CharField(_("outcome"), max_length=16, choices=CallTask.Outcome.choices)
    is_conversation = models.BooleanField(_("conversation"), default=False)
    loans = models.ManyToManyField(
        Loan, through="CallAttemptLoan", related_name="call_attempts", verbose_name=_("loans")
    )
    voicemail_message = models.TextField(_("voicemail left"), blank=True)
    made_by = models.CharField(_("made by"), max_length=150)

    class Meta:
        ordering = ["-made_at", "-id"]
        verbose_name = _("call attempt")
        verbose_name_plural = _("call attempts")
        indexes = [models.Index(fields=["customer", "made_at"], name="call_attempt_customer_idx")]

    def __str__(self):
        return f"Call to {self.customer_id} at {timezone.localtime(self.made_at):%Y-%m-%d %H:%M} ({self.outcome})"


class CallAttemptLoan(models.Model):
    """A loan a call was about (the task's loan, and each loan the call covered)."""

    attempt = models.ForeignKey(CallAttempt, on_delete=models.CASCADE, related_name="covered")
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["attempt", "loan"], name="call_attempt_loan_unique")]
        indexes = [models.Index(fields=["loan"], name="call_attempt_loan_idx")]

    def __str__(self):
        return f"{self.attempt_id}: {self.loan_id}"


class PromiseToPay(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        KEPT = "kept", _("Kept")
        BROKEN = "broken", _("Broken")

    case = models.ForeignKey(
        CollectionCase, on_delete=models.CASCADE, related_name="promises", verbose_name=_("case")
    )
    call_task = models.ForeignKey(
        CallTask,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="promises",
        verbose_name=_("call task"),
    )
    amount = models.DecimalField(
        _("amount"), max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    promised_date = models.DateField(_("promised date"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(_("created at"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    reminder_planned_at = models.DateTimeField(_("reminder planned at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("promise to pay")
        verbose_name_plural = _("promises to pay")
        constraints = [
            models.UniqueConstraint(
                fields=["case"], condition=Q(status="pending"), name="promise_one_pending_per_case"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="promise_amount_positive"),
        ]

    def __str__(self):
        return f"{self.amount} by {self.promised_date} ({self.status})"


class Agency(models.Model):
    name = models.CharField(_("name"), max_length=200)
    code = models.CharField(_("code"), max_length=32, unique=True)
    may_see_personal_data = models.BooleanField(
        _("contract allows personal data"),
        default=False,
        help_text=_("Unless ticked, names, phones and emails in placement files are masked."),
    )
    is_active = models.BooleanField(_("takes new placements"), default=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("collection agency")
        verbose_name_plural = _("collection agencies")

    def __str__(self):
        return f"{self.code} · {self.name}"


class AgencyPlacement(models.Model):
    """Cases handed to an agency together, with the file the agency received."""

    class Reason(models.TextChoices):
        """Why cases were placed (``placed`` events) or taken back (``recall_reason``)."""

        MANUAL = "manual", _("Placed by an operator")
        LADDER = "ladder", _("Placed by the ladder")
        RECALLED = "recalled", _("Recalled by an operator")
        LEGAL = "legal", _("Referred to legal")
        PAID = "paid", _("Overdue amount paid")

    agency = models.ForeignKey(
        Agency, on_delete=models.PROTECT, related_name="placements", verbose_name=_("agency")
    )
    cases = models.ManyToManyField(CollectionCase, related_name="placements", verbose_name=_("cases"))
    placed_at = models.DateTimeField(_("placed at"))
    placed_by = models.CharField(_("placed by"), max_length=150)
    recalled_at = models.DateTimeField(_("recalled at"), null=True, blank=True)
    recalled_by = models.CharField(_("recalled by"), max_length=150, blank=True)
    recall_reason = models.CharField(_("recall reason"), max_length=64, choices=Reason.choices, blank=True)
    file = models.TextField(_("placement file (CSV)"), blank=True, editable=False)
    file_sha256 = models.CharField(_("file SHA-256"), max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-placed_at", "-id"]
        verbose_name = _("agency placement")
        verbose_name_plural = _("agency placements")
        permissions = [("download_placement_file", "Can download agency placement files")]

    def __str__(self):
        return f"Placement {self.pk} with {self.agency_id}"

    @property
    def is_active(self) -> bool:
        return self.recalled_at is None

    def clean(self):
        super().clean()
        if self.recalled_at and self.recalled_at < self.placed_at:
            raise ValidationError({"recalled_at": _("A placement cannot be recalled before it was placed.")})


class LegalReferral(models.Model):
    """A case handed to legal: all automatic contact for its loan stops."""

    case = models.OneToOneField(
        CollectionCase, on_delete=models.PROTECT, related_name="legal_referral", verbose_name=_("case")
    )
    referred_at = models.DateTimeField(_("referred at"))
    referred_by = models.CharField(_("referred by"), max_length=150)
    dpd = models.PositiveIntegerField(_("days past due"))
    amount_overdue = models.DecimalField(_("amount overdue"), max_digits=14, decimal_places=2)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        ordering = ["-referred_at", "-id"]
        verbose_name = _("legal referral")
        verbose_name_plural = _("legal referrals")

    def __str__(self):
        return f"Legal referral of case {self.case_id}"
