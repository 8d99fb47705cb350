from anymail.signals import tracking
from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _

from loans import signals as loan_signals


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Reminders")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import archive, checks, exports, receivers, signals  # noqa: F401  (checks registers itself)
        from .email_tracking import on_tracking_event

        exports.register()  # the notification log as a compliance export kind (core.exports)
        archive.register()  # and as a log whose old months are archived (core.log_archive)
        loan_signals.autodebit_failed.connect(
            receivers.on_autodebit_failed, dispatch_uid="notifications.notice_autodebit_failed"
        )
        loan_signals.installments_paid.connect(
            signals.on_installments_paid, dispatch_uid="notifications.cancel_on_paid"
        )
        loan_signals.tier_changed.connect(
            signals.on_tier_changed, dispatch_uid="notifications.replan_on_tier_change"
        )
        tracking.connect(on_tracking_event, dispatch_uid="notifications.email_tracking")
        connection_created.connect(
            _use_sqlites_real_parameter_limit, dispatch_uid="notifications.sqlite_params"
        )


def _use_sqlites_real_parameter_limit(sender, connection, **kwargs):
    """Django 5.2 assumes SQLite's historical limit of 999 parameters per statement, which splits a bulk insert
    of the planner into an insert per 45 rows; the SQLite that Python links today allows 32766 or more. Use the
    connection's real limit (capped at 32766), so set-based jobs take a fixed number of queries on SQLite too."""
    if connection.vendor != "sqlite":
        return
    import sqlite3

    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    connection.features.max_query_params = max(999, min(limit, 32766))
