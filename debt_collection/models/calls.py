"""Call tasks for collectors and the calls actually made."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loans.models import Customer, Loan, PolicyVersion

from .cases import CollectionCase


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
