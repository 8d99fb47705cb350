"""Template tags of the operator screens: the dashboard panel on the admin's front page."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from backoffice import charts
from backoffice.dashboard import (
    CURE_WINDOW_DAYS,
    DPD_BUCKETS,
    ROLL_BUCKETS,
    ROLL_PERIOD_DAYS,
    dashboard_figures,
    day_start,
)
from backoffice.pipeline_runs import latest_run
from backoffice.pipeline_views import RUN_PERMISSION, VIEW_PERMISSION, chunk_progress, step_rows
from core.money import format_money
from loans.models import CreditTier, Loan
from notifications.choices import Channel
from notifications.models import NotificationLog

register = template.Library()

# Who sees every collector's queue (the call queue's collector filter): their figures link to it.
ALL_TASKS_PERMISSION = "collections.view_all_calltasks"


def status_label(code: str) -> str:
    try:
        return str(NotificationLog.Status(code).label)
    except ValueError:
        return code


def reason_label(code: str) -> str:
    if not code:
        return _("No reason given")
    try:
        return str(NotificationLog.Reason(code).label)
    except ValueError:
        return code


def channel_label(code: str) -> str:
    try:
        return str(Channel(code).label)
    except ValueError:
        return code


def percent(rate) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def dashboard_context(figures: dict) -> dict:
    """Turn the cached figures (codes and numbers) into rows and charts in the request's language."""
    matrix = figures["contacts"]["matrix"]
    channels = [c for c in Channel.values if any(ch == c for (_s, ch) in matrix)] or [Channel.SMS.value]
    statuses = [s for s in NotificationLog.Status.values if any(st == s for (st, _c) in matrix)]
    today = figures["today"]
    log = "admin:notifications_notificationlog_changelist"
    todays = {
        "scheduled_for__gte": moment(today),
        "scheduled_for__lt": moment(today + dt.timedelta(days=1)),
    }
    status_rows = [
        {
            "code": s,
            "label": status_label(s),
            "cells": [
                {
                    "n": matrix.get((s, c), 0),
                    "url": _list_url(log, status__exact=s, channel__exact=c, **todays),
                }
                for c in channels
            ],
            "total": sum(matrix.get((s, c), 0) for c in channels),
            "url": _list_url(log, status__exact=s, **todays),
        }
        for s in statuses
    ]
    channel_totals = [
        {
            "n": sum(matrix.get((s, c), 0) for s in statuses),
            "url": _list_url(log, channel__exact=c, **todays),
        }
        for c in channels
    ]
    held_back = [
        {
            "status": status_label(s),
            "status_code": s,
            "reason": reason_label(r),
            "reason_code": r,
            "count": n,
            "url": _list_url(log, status__exact=s, reason__exact=r, **todays),
        }
        for s, r, n in figures["contacts"]["held_back"]
    ]
    history = figures["history"]
    days = [date_format(h["day"], "m-d") for h in history]
    contacts_chart = charts.bar_chart(
        _("Contacts, last 14 days"),
        days,
        [
            charts.Series(_("Sent"), [h["contacted"] for h in history], "#2e7d32"),
            charts.Series(_("Held back"), [h["held_back"] for h in history], "#f9a825"),
            charts.Series(_("Failed"), [h["failed"] for h in history], "#c62828"),
            charts.Series(_("Planned"), [h["pending"] for h in history], "#90a4ae"),
        ],
    )
    payments_chart = charts.line_chart(
        _("Payments received, last 14 days"),
        days,
        [charts.Series(_("Amount"), [h["paid_amount"] for h in history], "#1565c0")],
    )
    overdue = figures["overdue"]
    overdue_chart = charts.bar_chart(
        _("Overdue amount by DPD bucket"),
        [o["bucket"] for o in overdue],
        [charts.Series(_("Amount owed"), [o["amount"] for o in overdue], "#c62828")],
    )
    instalments = "admin:loans_installment_changelist"
    snapshot = today - dt.timedelta(days=ROLL_PERIOD_DAYS)
    roll_rows = []
    for r in figures["roll_rates"]:
        was_in_bucket = {"loan__status__in": IN_BOOK, **due_dates(snapshot, ROLL_RANGES[r["from_bucket"]])}
        still_unpaid = _list_url(instalments, paid="no", **was_in_bucket)
        roll_rows.append(
            {
                **r,
                "from_label": _("Current") if r["from_bucket"] == "current" else r["from_bucket"],
                "rate_text": percent(r["rate"]),
                "base_url": _list_url(instalments, unpaid_on=snapshot.isoformat(), **was_in_bucket),
                "rolled_url": still_unpaid,
            }
        )
    cure_rows = []
    for r in figures["cure_rates"]:
        tier = (
            {"loan__customer__tier__id__exact": r["tier_id"]}
            if r.get("tier_id")
            else {"loan__customer__tier__isnull": "True"}
        )
        went_overdue = {
            "went_overdue": "yes",
            "loan__status__in": IN_BOOK,
            "due_date__gte": (today - dt.timedelta(days=CURE_WINDOW_DAYS)).isoformat(),
            "due_date__lt": today.isoformat(),
            **tier,
        }
        cure_rows.append(
            {
                **r,
                "tier": CreditTier.label_for(r["tier_code"], r["tier_name"])
                if r["tier_code"]
                else _("No tier"),
                "rate_text": percent(r["rate"]),
                "overdue_url": _list_url(instalments, **went_overdue),
                "cured_url": _list_url(instalments, paid="yes", **went_overdue),
            }
        )
    return {
        "figures": figures,
        "channels": [channel_label(c) for c in channels],
        "status_rows": status_rows,
        "channel_totals": channel_totals,
        "contacts_total": sum(c["n"] for c in channel_totals),
        "contacts_total_url": _list_url(log, **todays),
        "held_back": held_back,
        "contacts_chart": contacts_chart,
        "payments_chart": payments_chart,
        "overdue_chart": overdue_chart,
        "overdue": [
            {
                **o,
                "amount_text": format_money(o["amount"], settings.DEFAULT_CURRENCY),
                "url": _list_url(
                    "admin:loans_installment_changelist",
                    paid="no",
                    loan__status__in=IN_BOOK,
                    **bucket_due_dates(today, o["bucket"]),
                ),
            }
            for o in overdue
        ],
        "overdue_count": sum(o["count"] for o in overdue),
        "overdue_url": _list_url(
            instalments,
            paid="no",
            loan__status__in=IN_BOOK,
            due_date__lte=(today - dt.timedelta(days=1)).isoformat(),
        ),
        "overdue_amount": format_money(sum((o["amount"] for o in overdue), 0), settings.DEFAULT_CURRENCY),
        "roll_rows": roll_rows,
        "cure_rows": cure_rows,
        "collector_tasks": figures["collector_tasks"],
        "today": today,
    }


# The loans the overdue book counts: all but the written-off ones.
IN_BOOK = ",".join(s for s in Loan.Status.values if s != Loan.Status.WRITTEN_OFF)


# (fewest, most days past due) of each bucket the dashboard counts, as of the day it counts them on.
DPD_RANGES = {key: (first, last) for key, first, last in DPD_BUCKETS}
ROLL_RANGES = {key: (first, last) for key, first, last in ROLL_BUCKETS}


def bucket_due_dates(today: dt.date, bucket: str) -> dict[str, str]:
    """The due dates of the instalments in a DPD bucket on ``today`` (the dashboard's buckets)."""
    return due_dates(today, DPD_RANGES[bucket])


def due_dates(day: dt.date, dpd_range: tuple[int, int | None]) -> dict[str, str]:
    """The due dates whose days past due on ``day`` lie in ``dpd_range`` (both ends included)."""
    first, last = dpd_range
    dates = {"due_date__lte": (day - dt.timedelta(days=first)).isoformat()}
    if last is not None:
        dates["due_date__gte"] = (day - dt.timedelta(days=last)).isoformat()
    return dates


def moment(day: dt.date) -> str:
    """Midnight at the start of ``day`` in the back office's time zone, as a filter value of a time column."""
    return day_start(day).isoformat()


def _list_url(name: str, **params) -> str:
    return f"{reverse(name)}?{urlencode(params)}"


def morning_context(morning: dict | None, today: dt.date) -> dict | None:
    """The 9 o'clock figures with the admin list behind each one."""
    if morning is None:
        return None
    yesterday = today - dt.timedelta(days=1)
    tomorrow = today + dt.timedelta(days=1)
    promises, tasks = "admin:collections_promisetopay_changelist", "admin:collections_calltask_changelist"
    debits = "admin:loans_autodebitattempt_changelist"
    cases = "admin:collections_collectioncase_changelist"
    age_labels = {
        "later": _("Callable later"),
        "today": _("Callable since today"),
        "1-2": _("Waiting 1-2 days"),
        "3-7": _("Waiting 3-7 days"),
        "8+": _("Waiting over 7 days"),
    }
    age_ranges = {
        "later": {"scheduled_for__gte": tomorrow},
        "today": {"scheduled_for__gte": today, "scheduled_for__lt": tomorrow},
        "1-2": {"scheduled_for__gte": today - dt.timedelta(days=2), "scheduled_for__lt": today},
        "3-7": {
            "scheduled_for__gte": today - dt.timedelta(days=7),
            "scheduled_for__lt": today - dt.timedelta(days=2),
        },
        "8+": {"scheduled_for__lt": today - dt.timedelta(days=7)},
    }
    queue = morning["queue"]
    return {
        **morning,
        "promise_kept_text": percent(morning["promise_kept_rate"]),
        "due_today_amount_text": format_money(
            morning["promises"]["due_today_amount"], settings.DEFAULT_CURRENCY
        ),
        "right_party_text": percent(morning["right_party_rate"]),
        "links": {
            "promises_due_today": _list_url(
                promises, status__exact="pending", promised_date=today.isoformat()
            ),
            "promises_broken_yesterday": _list_url(
                promises,
                status__exact="broken",
                resolved_at__gte=moment(yesterday),
                resolved_at__lt=moment(today),
            ),
            "autodebit_failed_yesterday": _list_url(
                debits, status__exact="failed", attempted_on=yesterday.isoformat()
            ),
            "autodebit_failed_today": _list_url(
                debits, status__exact="failed", attempted_on=today.isoformat()
            ),
            "queue": _list_url(tasks, status__exact="open"),
            "promises_resolved": _list_url(
                promises, promised_date__gte=(today - dt.timedelta(days=30)).isoformat()
            ),
            "calls_completed": _list_url(tasks, status__exact="done"),
        },
        "collected": [
            {
                **row,
                "stage_label": row["stage"] or _("No stage yet"),
                "amount_text": format_money(row["amount"], settings.DEFAULT_CURRENCY),
                "url": _list_url(cases, stage=row["stage"]) if row["stage"] else reverse(cases),
            }
            for row in morning["collected_by_stage"]
        ],
        "queue_ages": [
            {
                "key": key,
                "label": age_labels[key],
                "count": queue[key],
                "url": _list_url(
                    tasks, status__exact="open", **{k: moment(v) for k, v in age_ranges[key].items()}
                ),
            }
            for key in age_labels
        ],
    }


def pipeline_context(request) -> dict:
    run = latest_run()
    return {
        "pipeline_run": run,
        "pipeline_steps": step_rows(run) if run else [],
        "pipeline_chunks": chunk_progress(run) if run else None,
        "may_run_pipeline": request.user.has_perm(RUN_PERMISSION),
        "may_view_runs": request.user.has_perm(VIEW_PERMISSION),
    }


def collector_task_rows(rows: list[dict], today: dt.date, *, linked: bool) -> list[dict]:
    """Open call tasks per collector, with the call queue filtered to them when the user sees every queue."""
    tasks = "admin:collections_calltask_changelist"
    tomorrow = moment(today + dt.timedelta(days=1))
    out = []
    for r in rows:
        whose = {"status__exact": "open", "collector": r.get("collector_id") or "none"}
        out.append(
            {
                **r,
                "open_url": _list_url(tasks, **whose) if linked else "",
                "due_url": _list_url(tasks, **whose, scheduled_for__lt=tomorrow) if linked else "",
            }
        )
    return out


@register.inclusion_tag("backoffice/dashboard.html", takes_context=True)
def dashboard_panel(context):
    """The dashboard above the app list (staff only: the admin index is already behind the admin login)."""
    request = context.get("request")
    if request is None or not request.user.is_active or not request.user.is_staff:
        return {"hidden": True}
    figures = dashboard_figures()
    panel = dashboard_context(figures)
    panel["collector_tasks"] = collector_task_rows(
        figures["collector_tasks"], figures["today"], linked=request.user.has_perm(ALL_TASKS_PERMISSION)
    )
    return {
        **panel,
        **pipeline_context(request),
        "morning": morning_context(figures.get("morning"), figures["today"]),
        "csrf_token": context.get("csrf_token"),
    }
