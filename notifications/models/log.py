"""The notification log (one planned contact and its fate), the instalments each contact is about, and the
outbox of the default delivery backend."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.models import CreditTier, Customer, Installment, PolicyVersion

from ..choices import Channel, Kind


class NotificationLogQuerySet(models.QuerySet):
    def pending(self):
        """Contacts not sent nor held back yet, for a scan of the due ones (the dispatcher's claim, by the
        ``notif_pending_due_idx`` partial index).

        Not for a query narrowed by a list of ids or customers: there the status is kept in Python
        (``is_pending_status``). With the status in SQL, PostgreSQL takes the partial index for those queries
        too, as its statistics still count the pending contacts of before the day's planning (a day plans
        100,000 contacts minutes before it dispatches them, far too soon for autovacuum's analyse), and reads
        every pending contact of the book, and every dead index entry of the ones sent since, for each ten ids:
        40-90 ms a query at 1,000,000 loans instead of a fraction of a millisecond by primary key."""
        return self.filter(status__in=NotificationLog.PENDING_STATUSES)

    def counted_for_cap(self):
        return self.filter(status__in=NotificationLog.CONTACTED_STATUSES)


class NotificationLog(models.Model):
    """One planned contact and its fate. Never deleted: a contact held back stays here with its reason."""

    class Status(models.TextChoices):
        PLANNED = "planned", _("Planned")
        DEFERRED = "deferred", _("Deferred")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        SUPPRESSED = "suppressed", _("Suppressed")
        CANCELLED = "cancelled", _("Cancelled")

    class Reason(models.TextChoices):
        NONE = "", _("—")
        OUTSIDE_CONTACT_WINDOW = "outside_contact_window", _("Outside the contact window")
        FREQUENCY_CAP = "frequency_cap", _("Weekly contact cap reached")
        OPTED_OUT = "opted_out", _("Customer opted out of the channel")
        DO_NOT_CONTACT = "do_not_contact", _("Customer must not be contacted")
        PAID = "paid", _("Already paid")
        NO_DESTINATION = "no_destination", _("No phone, email or device to send to")
        NO_TEMPLATE = "no_template", _("No template for this kind and channel")
        TIER_CHANGED = "tier_changed", _("Credit tier changed")
        PROVIDER_ERROR = "provider_error", _("The provider failed")
        EXPIRED = "expired", _("Not sent in time")
        CALL_LIMIT = "call_limit", _("Call limit reached")

    PENDING_STATUSES = (Status.PLANNED, Status.DEFERRED)
    CONTACTED_STATUSES = (Status.SENT, Status.DELIVERED)

    # No index of its own: the two indexes below that start with the customer serve every lookup by customer, and
    # every index of the log is written for each contact planned, claimed and sent.
    customer = models.ForeignKey(
        Customer,
        on_delete=models.PROTECT,
        related_name="notifications",
        verbose_name=_("customer"),
        db_index=False,
    )
    installments = models.ManyToManyField(
        Installment, through="NotificationItem", related_name="notifications", verbose_name=_("instalments")
    )
    tier = models.ForeignKey(
        CreditTier,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("credit tier"),
    )
    # The tier's policy version the contact was decided under (a challenger's, for a customer in its arm).
    policy_version = models.ForeignKey(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("policy version"),
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PLANNED)
    reason = models.CharField(_("reason"), max_length=32, choices=Reason.choices, blank=True, default="")
    due_date = models.DateField(_("due date"), null=True, blank=True)
    offset_days = models.SmallIntegerField(_("offset (days)"), null=True, blank=True)
    scheduled_for = models.DateTimeField(_("scheduled for"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    destination = models.CharField(_("destination"), max_length=255, blank=True)
    language = models.CharField(_("language"), max_length=10, blank=True)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    body = models.TextField(_("body"), blank=True)
    loan_refs = models.CharField(
        _("loans"), max_length=500, blank=True, help_text=_("Comma-separated loan references.")
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)
    # Sent to the provider so a retry after a crash between sending and recording is recognised, not re-sent.
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # What makes a planned contact unique (customer, due date, rule...): planning twice adds nothing.
    dedupe_key = models.CharField(max_length=200, unique=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = NotificationLogQuerySet.as_manager()

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notification log")
        permissions = [("export_notificationlog", "Can export the notification log")]
        indexes = [
            # In the claim's order (scheduled_for, then id): by the due moment alone, PostgreSQL sorted every
            # pending contact due for each batch it claimed, or walked the changelist's index through every
            # contact ever sent (300,000 rows and 0.4 s a batch after a few days of a 1,000,000-loan book).
            models.Index(
                fields=["scheduled_for", "id"],
                condition=Q(status__in=["planned", "deferred"]),
                name="notif_pending_due_idx",
            ),
            models.Index(fields=["customer", "sent_at"], name="notif_customer_sent_idx"),
            models.Index(fields=["customer", "-scheduled_for"], name="notif_customer_timeline_idx"),
            models.Index(fields=["-scheduled_for", "-id"], name="notif_changelist_idx"),
            models.Index(fields=["status", "-scheduled_for"], name="notif_status_idx"),
            # The compliance officer's usual filter (held back, by reason), in the changelist's order.
            models.Index(fields=["status", "reason", "-scheduled_for"], name="notif_status_reason_idx"),
            models.Index(fields=["provider_message_id"], name="notif_provider_id_idx"),
        ]

    def __str__(self):
        return f"{self.channel} {self.kind} to {self.customer_id} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.is_pending_status(self.status)

    @classmethod
    def is_pending_status(cls, status: str) -> bool:
        """Whether a contact of this status is still to be sent (``pending()``, for rows already read)."""
        return status in cls.PENDING_STATUSES


class NotificationItem(models.Model):
    """Which instalments a (possibly consolidated) contact is about."""

    notification = models.ForeignKey(
        NotificationLog, on_delete=models.CASCADE, related_name="items", verbose_name=_("contact")
    )
    installment = models.ForeignKey(
        Installment, on_delete=models.PROTECT, related_name="notification_items", verbose_name=_("instalment")
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification", "installment"], name="notif_item_unique")
        ]
        indexes = [models.Index(fields=["installment"], name="notif_item_installment_idx")]

    def __str__(self):
        return f"{self.notification_id}: {self.installment_id}"


class OutboxMessage(models.Model):
    """What the default delivery backend "sent": kept in the database so the demo shows every message."""

    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    destination = models.CharField(_("destination"), max_length=255)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    body = models.TextField(_("body"))
    idempotency_key = models.UUIDField(_("idempotency key"), unique=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=_("created at"))

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox")

    def __str__(self):
        # Not the destination: this text is the admin's page title, breadcrumb and history heading, which
        # viewers who may not see personal data see too.
        return f"{self.channel} {self.provider_message_id}"


class ParkedReceipt(models.Model):
    """A delivery receipt that named no contact when it came: a fast provider can answer before the dispatcher
    has recorded the message's provider id (the batch is still at the gateway). It waits here and is applied
    when that send is recorded, or by the periodic pass; after ``PARKED_RECEIPT_RETENTION_HOURS`` it is
    dropped (an id that was never ours)."""

    provider_message_id = models.CharField(max_length=128, db_index=True)
    status = models.CharField(max_length=16)
    error = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(null=True, blank=True)
    also_after_delivery = models.BooleanField(default=False)
    actor = models.CharField(max_length=64)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("parked delivery receipt")
        verbose_name_plural = _("parked delivery receipts")

    def __str__(self):
        return f"{self.status} {self.provider_message_id}"
