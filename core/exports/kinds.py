"""What can be exported: a registry of kinds, each naming its columns, filters, permission, rows and batches.

Core registers the audit trail (``core.exports.audit``); an app above registers its own log from its
``AppConfig.ready`` (the notification log: ``notifications.exports``), so core never imports the apps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from core import moments


class ExportError(ValueError):
    """An export was asked with an unknown kind, format or filter."""


@dataclass(frozen=True)
class ExportKind:
    """One exportable log.

    ``queryset(filters)`` gives the rows an export with these (cleaned) filters holds, in a stable order;
    ``batches(qs, masked=..., fmt=...)`` yields them as tuples in ``columns`` order, masked if asked, a chunk
    at a time. ``plain`` batches hold only text, integers and None, already escaped for spreadsheets (the CSV
    writer's fast path). With ``through_seq``, the manifest records the first column of the last row
    (an audit export never contains its own completion event)."""

    name: str
    columns: tuple[str, ...]
    filters: tuple[str, ...]
    permission: str
    queryset: Callable[[dict[str, str]], QuerySet]
    batches: Callable[..., Iterator[list[tuple]]]
    plain: bool = False
    through_seq: bool = False


def parse_moment(value: Any) -> dt.datetime:
    """An export filter's date or time (see ``core.moments.parse_moment``)."""
    try:
        return moments.parse_moment(value)
    except ValueError as exc:
        raise ExportError(str(exc)) from None


_KINDS: dict[str, ExportKind] = {}


def register_kind(kind: ExportKind) -> None:
    """Add (or replace, on a second ``ready``) an export kind."""
    _KINDS[kind.name] = kind


def kind_names() -> tuple[str, ...]:
    return tuple(_KINDS)


def export_kinds() -> tuple[ExportKind, ...]:
    return tuple(_KINDS.values())


def export_kind(name: str) -> ExportKind:
    """The kind called ``name``; ExportError when none is."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ExportError(f"Unknown export “{name}”: use {' or '.join(kind_names())}.") from None


def clean_filters(kind: str, filters: dict[str, Any] | None) -> dict[str, str]:
    """Keep the non-empty filters, as strings; raise ExportError on a kind or filter this export does not know."""
    known = export_kind(kind).filters
    cleaned = {}
    for key, value in (filters or {}).items():
        if value in (None, ""):
            continue
        if key not in known:
            raise ExportError(f"Unknown filter “{key}” for the {kind} export.")
        if key in ("since", "until"):
            value = parse_moment(value).isoformat()
        cleaned[key] = str(value)
    return dict(sorted(cleaned.items()))


def filtered_queryset(kind: str, filters: dict[str, Any] | None) -> QuerySet:
    """The rows an export of ``kind`` with these filters holds, in a stable order."""
    return export_kind(kind).queryset(clean_filters(kind, filters))


def within(qs: QuerySet, time_field: str, filters: dict[str, str]) -> QuerySet:
    """``since`` (inclusive) and ``until`` (exclusive) on ``time_field``."""
    if "since" in filters:
        qs = qs.filter(**{f"{time_field}__gte": parse_moment(filters["since"])})
    if "until" in filters:
        qs = qs.filter(**{f"{time_field}__lt": parse_moment(filters["until"])})
    return qs
