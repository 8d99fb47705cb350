"""List filters for big logs: a range of days typed in, never a list of values read from the table.

``DateRangeFilter`` filters a date-time column on the days of the operator's zone (the active time zone:
``TIME_ZONE`` unless a user's zone is activated), from the first day to the last, both included:
``?<field>__from=2026-12-01&<field>__to=2026-12-05``. The bounds are aware moments, so the database compares
instants and an index on the column serves the filter.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _


def day_start(day: dt.date) -> dt.datetime:
    """The first moment of ``day`` in the active time zone (the operator's)."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min), timezone.get_current_timezone())


def parse_day(value: str | None) -> dt.date | None:
    """A day typed as ``YYYY-MM-DD`` (None when empty); ValueError with a message for anything else."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        day = parse_date(value)
    except ValueError:
        day = None
    if day is None:
        raise ValueError(_("“%(value)s” is not a day (YYYY-MM-DD).") % {"value": value})
    return day


def day_range(since: dt.date | None, until: dt.date | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The moments [start of ``since``, start of the day after ``until``) in the operator's zone."""
    return (
        day_start(since) if since else None,
        day_start(until + dt.timedelta(days=1)) if until else None,
    )


class DateRangeFilter(admin.FieldListFilter):
    template = "admin/core/date_range_filter.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.param_from = f"{field_path}__from"
        self.param_to = f"{field_path}__to"
        super().__init__(field, request, params, model, model_admin, field_path)
        try:
            self.since = parse_day(self._value(self.param_from))
            self.until = parse_day(self._value(self.param_to))
        except ValueError as exc:
            raise IncorrectLookupParameters(exc) from exc
        if self.since and self.until and self.since > self.until:
            raise IncorrectLookupParameters(_("The first day comes after the last."))

    def _value(self, name: str) -> str:
        value = self.used_parameters.get(name)
        if isinstance(value, list):
            value = value[-1] if value else ""
        return value or ""

    def expected_parameters(self):
        return [self.param_from, self.param_to]

    def has_output(self):
        return True

    def queryset(self, request, queryset):
        start, end = day_range(self.since, self.until)
        if start:
            queryset = queryset.filter(**{f"{self.field_path}__gte": start})
        if end:
            queryset = queryset.filter(**{f"{self.field_path}__lt": end})
        return queryset

    def choices(self, changelist):
        # Every other parameter of the list (its other filters, the search term, the ordering) is kept; the
        # page number is not: a narrower list starts on its first page.
        query = dict(changelist.params)
        for name in (*self.expected_parameters(), PAGE_VAR, ERROR_FLAG):
            query.pop(name, None)
        pairs = [
            (k, v) for k, values in query.items() for v in (values if isinstance(values, list) else [values])
        ]
        yield {
            "param_from": self.param_from,
            "param_to": self.param_to,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "query_params": pairs,
            "zone": timezone.get_current_timezone_name(),
        }
