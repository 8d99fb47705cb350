"""The notification log as an archivable log (``manage.py archive_month notifications YYYY-MM``, PostgreSQL):
a month of contacts, with the instalment items of each, leaves the database for an archive file once none of
them is still to be sent. Registered with core from ``AppConfig.ready``."""

from __future__ import annotations

from core.log_archive import ArchivableLog, register_archivable_log

from .models import NotificationItem, NotificationLog

ARCHIVED = "notifications.log.month_archived"


def register() -> None:
    pending = ", ".join(f"'{status}'" for status in NotificationLog.PENDING_STATUSES)
    register_archivable_log(
        ArchivableLog(
            kind="notifications",
            table=NotificationLog._meta.db_table,
            key="created_at",
            children=(
                (NotificationItem._meta.db_table, NotificationItem._meta.get_field("notification").column),
            ),
            busy=f"status IN ({pending})",
            changed="updated_at",
            action=ARCHIVED,
        )
    )
