"""Template tags of the operator screens: the dashboard panel on the admin's front page."""

from __future__ import annotations

from django import template
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from backoffice import charts
from backoffice.dashboard import dashboard_figures
from notifications.choices import Channel
from notifications.models import NotificationLog

register = template.Library()


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
    status_rows = [
        {
            "code": s,
            "label": status_label(s),
            "cells": [matrix.get((s, c), 0) for c in channels],
            "total": sum(matrix.get((s, c), 0) for c in channels),
        }
        for s in statuses
    ]
    channel_totals = [sum(matrix.get((s, c), 0) for s in statuses) for c in channels]
    held_back = [
        {"status": status_label(s), "status_code": s, "reason": reason_label(r), "reason_code": r, "count": n}
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
    roll_rows = [
        {
            **r,
            "from_label": _("Current") if r["from_bucket"] == "current" else r["from_bucket"],
            "rate_text": percent(r["rate"]),
        }
        for r in figures["roll_rates"]
    ]
    cure_rows = [
        {
            **r,
            "tier": r["tier_code"] and f"{r['tier_code']} · {r['tier_name']}" or _("No tier"),
            "rate_text": percent(r["rate"]),
        }
        for r in figures["cure_rates"]
    ]
    return {
        "figures": figures,
        "channels": [channel_label(c) for c in channels],
        "status_rows": status_rows,
        "channel_totals": channel_totals,
        "contacts_total": sum(channel_totals),
        "held_back": held_back,
        "contacts_chart": contacts_chart,
        "payments_chart": payments_chart,
        "overdue_chart": overdue_chart,
        "overdue": overdue,
        "overdue_count": sum(o["count"] for o in overdue),
        "overdue_amount": sum((o["amount"] for o in overdue), 0),
        "roll_rows": roll_rows,
        "cure_rows": cure_rows,
        "collector_tasks": figures["collector_tasks"],
    }


@register.inclusion_tag("backoffice/dashboard.html", takes_context=True)
def dashboard_panel(context):
    """The dashboard above the app list (staff only: the admin index is already behind the admin login)."""
    request = context.get("request")
    if request is None or not request.user.is_active or not request.user.is_staff:
        return {"hidden": True}
    return dashboard_context(dashboard_figures())
