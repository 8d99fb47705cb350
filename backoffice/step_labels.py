"""What the dashboard and a pipeline run's page call each step and each count. The steps report codes
(``dispatch: suppressed:frequency_cap=3``), which stay the contract of ``run_jobs``'s output and of the stored
runs; people read these labels, in their language. A contact's status and reason read as the notification
log's own labels, so a reason code is named the same way on every page."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from notifications.models import NotificationLog

STEP_LABELS = {
    "apply_scores": _("New credit scores"),
    "autodebit": _("Auto-debit"),
    "policy_versions": _("Policy versions"),
    "plan": _("Planning the day's contacts"),
    "collections": _("Collections"),
    "dispatch": _("Sending"),
    "anchor_audit": _("Anchoring the audit trail"),
}

COUNT_LABELS = {
    # new credit scores
    "scores_applied": _("Scores applied"),
    "customers_updated": _("Customers updated"),
    "tiers_changed": _("Tier changes"),
    # auto-debit
    "succeeded": _("Succeeded"),
    "unconfirmed": _("Not confirmed yet"),
    # policy versions
    "versions_recorded": _("Versions recorded"),
    # planning
    "customers": _("Customers"),
    "planned": _("Planned"),
    "already_planned": _("Already planned"),
    "extended": _("Added to a planned message"),
    "assigned_to_arms": _("Customers assigned to an arm"),
    # collections
    "cases_opened": _("Cases opened"),
    "cases_closed": _("Cases closed"),
    "cases_on_hold": _("Cases on hold"),
    "cases_in_grace": _("Cases in grace"),
    "cases_placed": _("Cases placed with an agency"),
    "cases_referred_to_legal": _("Cases referred to legal"),
    "steps_performed": _("Ladder steps performed"),
    "steps_skipped": _("Ladder steps skipped"),
    "agency_steps_without_agency": _("Agency steps without an agency"),
    "messages_planned": _("Notices planned"),
    "call_tasks_created": _("Call tasks created"),
    "call_tasks_cancelled": _("Call tasks cancelled"),
    "call_tasks_kept": _("Call tasks kept"),
    "call_tasks_not_callable": _("Call tasks not created (may not be called)"),
    "contacts_cancelled": _("Contacts cancelled"),
    "contacts_cancelled_frozen": _("Contacts cancelled (legal hold)"),
    "promises_kept": _("Promises kept"),
    "promises_broken": _("Promises broken"),
    "promise_reminders_planned": _("Promise reminders planned"),
    # sending and auto-debit
    "claimed": _("Claimed"),
    "failed": _("Failed"),
    # anchoring
    "seq": _("Last event"),
    "written": _("Anchors written"),
    "skipped": _("Skipped"),
}


def step_label(name: str) -> str:
    """The step's label; a step this module does not know keeps its code."""
    return str(STEP_LABELS.get(name, name))


def count_label(key: str) -> str:
    """A count's label: ``status`` and ``status:reason`` as the notification log names them, other counts from
    ``COUNT_LABELS``; a code this module does not know is shown as it is."""
    status, _sep, reason = key.partition(":")
    if key in COUNT_LABELS:
        return str(COUNT_LABELS[key])
    if status in NotificationLog.Status.values:
        label = str(NotificationLog.Status(status).label)
        if not reason:
            return label
        if reason in NotificationLog.Reason.values:
            return f"{label}: {NotificationLog.Reason(reason).label}"
        return f"{label}: {reason}"
    return key
