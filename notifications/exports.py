"""The notification log as a compliance export kind (``manage.py export_log notifications``, the log's
"Export" button): registered with core's export machinery from ``NotificationsConfig.ready``.

``notification_batches`` is the hot loop of a multi-million-row export: rows are read as the database driver
returns them (times as text, no Django converters), masked with ``mask_customer_text`` and escaped as each
row is built; ``tests/test_export_fast_paths.py`` holds it to the plain way, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connections
from django.db.models import QuerySet

from core.exports.kinds import ExportKind, register_kind, within
from core.exports.rows import raw_batches, time_reading
from core.exports.writers import FORMULA_FIRST, cell
from core.masking import mask_customer_text, mask_destination, mask_name

from .log_search import log_search_q
from .models import NotificationLog

NOTIFICATION_COLUMNS = (
    "id",
    "customer_ref",
    "customer_name",
    "loan_refs",
    "channel",
    "kind",
    "status",
    "reason",
    "scheduled_for",
    "sent_at",
    "destination",
    "subject",
    "body",
    "attempts",
    "provider_message_id",
)

# The values read for a notification row: the columns, then what masking needs to know about the customer.
_NOTIFICATION_FIELDS = (
    "id",
    "customer__ref",
    "customer__name",
    "loan_refs",
    "channel",
    "kind",
    "status",
    "reason",
    "scheduled_for",
    "sent_at",
    "destination",
    "subject",
    "body",
    "attempts",
    "provider_message_id",
    "customer__phone",
    "customer__email",
)

# Filters the export accepts (the same for the command line, the admin and the background task).
NOTIFICATION_FILTERS = (
    "since",
    "until",
    "status",
    "reason",
    "channel",
    "kind",
    "customer_ref",
    "loan_ref",
    "q",
)


def notification_queryset(filters: dict[str, str]) -> QuerySet:
    """In ``id`` order; ``since``/``until`` on ``scheduled_for``; ``customer_ref`` as typed or upper-cased (as the
    search box reads a reference); ``q`` matches as the admin's search box does."""
    qs = within(NotificationLog.objects.order_by("id"), "scheduled_for", filters)
    exact = {
        "status": "status",
        "reason": "reason",
        "channel": "channel",
        "kind": "kind",
    }
    for key, lookup in exact.items():
        if key in filters:
            qs = qs.filter(**{lookup: filters[key]})
    if "customer_ref" in filters:
        ref = filters["customer_ref"].strip()
        qs = qs.filter(customer__ref__in=sorted({ref, ref.upper()}))
    if "loan_ref" in filters:
        qs = qs.filter(loan_refs__contains=filters["loan_ref"])
    if "q" in filters:
        qs = qs.filter(log_search_q(filters["q"]))
    return qs


_TIME_COLUMNS = ("scheduled_for", "sent_at")


def notification_batches(qs: QuerySet, *, masked: bool, escape: bool = False) -> Iterator[list[tuple]]:
    """The notification rows (tuples in ``NOTIFICATION_COLUMNS`` order), masked if asked, a chunk at a time.

    The hot loop of every notification export (millions of rows): raw driver rows, positional access, one
    pass of ``mask_customer_text`` per subject and body. With ``escape`` (spreadsheet formats), every text
    cell a spreadsheet would run is escaped as ``cell`` does, after masking: the destination on its own (a
    phone starts with "+"), then one look at the first characters of the other text cells (all but the times,
    which start with a digit), and ``cell`` for the rare row that holds one."""
    select_time, moment = time_reading(connections[qs.db])
    fields = _NOTIFICATION_FIELDS
    if select_time is not None:
        qs = qs.annotate(**{f"{name}_text": select_time(name) for name in _TIME_COLUMNS})
        fields = tuple(f"{f}_text" if f in _TIME_COLUMNS else f for f in fields)
    for rows in raw_batches(qs.values_list(*fields)):
        batch = []
        append = batch.append
        for (
            pk,
            customer_ref,
            customer_name,
            loan_refs,
            channel,
            kind,
            status,
            reason,
            scheduled_for,
            sent_at,
            destination,
            subject,
            body,
            attempts,
            provider_message_id,
            phone,
            email,
        ) in rows:
            if masked:
                phone, email = phone or "", email or ""
                subject = mask_customer_text(subject, customer_name or "", phone, email) if subject else ""
                body = mask_customer_text(body, customer_name or "", phone, email) if body else ""
                customer_name = mask_name(customer_name or "")
                destination = mask_destination(destination or "")
            if escape and destination[:1] in FORMULA_FIRST:
                destination = "'" + destination  # most phone destinations: "+86..."
            row = (
                pk,
                customer_ref,
                customer_name,
                loan_refs,
                channel,
                kind,
                status,
                reason,
                moment(scheduled_for),
                moment(sent_at),
                destination,
                subject,
                body,
                attempts,
                provider_message_id,
            )
            if escape and not FORMULA_FIRST.isdisjoint(
                (
                    customer_ref[:1],
                    customer_name[:1],
                    loan_refs[:1],
                    channel[:1],
                    kind[:1],
                    status[:1],
                    reason[:1],
                    subject[:1],
                    body[:1],
                    provider_message_id[:1],
                )
            ):
                row = tuple(cell(v) if v.__class__ is str else v for v in row)
            append(row)
        yield batch


def notification_export_batches(qs: QuerySet, *, masked: bool, fmt: str) -> Iterator[list[tuple]]:
    # JSON is not a spreadsheet: its values are not escaped.
    return notification_batches(qs, masked=masked, escape=fmt != "json")


NOTIFICATIONS = ExportKind(
    name="notifications",
    columns=NOTIFICATION_COLUMNS,
    filters=NOTIFICATION_FILTERS,
    permission="notifications.export_notificationlog",
    queryset=notification_queryset,
    batches=notification_export_batches,
    # Rows hold only text, integers and None, escaped (the CSV writer's fast path).
    plain=True,
)


def register() -> None:
    register_kind(NOTIFICATIONS)
