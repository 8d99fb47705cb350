"""Moments typed by people (``--now``, ``--at``, a filter's bound, a preview's "as of"), read one way everywhere."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone


def parse_moment(value: Any) -> dt.datetime:
    """An aware datetime from ISO-8601 text (``Z`` allowed; a date alone is its midnight). A moment without an
    offset is read in the current time zone: the project's ``TIME_ZONE``, or the operator's where a request
    activated it. Raises ``ValueError`` naming the text."""
    if isinstance(value, dt.datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"“{text}” is not an ISO-8601 date and time (e.g. 2026-11-30T10:00:00+08:00)."
            ) from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment
