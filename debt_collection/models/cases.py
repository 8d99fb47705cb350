"""Collection cases and the ladder steps they ran."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.models import CreditTier, Loan, PolicyVersion
from loans.schedule import DpdBucket, days_past_due, days_past_due_q, dpd_bucket, local_day

from .ladder import EscalationStep


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
