"""The outcomes page (under /admin/): a tier's figures per policy version and arm, pooled over cohorts as bar
charts with their 95% intervals (plain SVG), and by cohort month in a table; the export of the figures. It reads
what the outcomes job stored (``strategy.outcomes``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.compliance_admin import export_file_response
from core.exports.jobs import may_export, start_export
from core.exports.kinds import ExportError
from core.models import ExportJob
from loans.models import Arm, CreditTier

from .exports import interval
from .models import OutcomeFigure

VIEW_PERMISSION = "strategy.view_outcomefigure"
Metric = OutcomeFigure.Metric
CHART_WIDTH, LABEL_WIDTH, BAR_WIDTH, ROW_HEIGHT = 720, 130, 250, 24
TABLE_METRICS = (
    Metric.PAID_BY_DUE,
    Metric.PAID_WITHIN_30,
    Metric.CURE,
    Metric.PROMISE_KEPT,
    Metric.OPT_OUT,
    Metric.CONTACTS_PER_CURE,
)


@dataclass
class Cell:
    """A figure as shown: count out of, its rate and 95% interval."""

    metric: str
    count: int
    out_of: int

    @property
    def is_ratio(self) -> bool:
        return self.metric in OutcomeFigure.RATIOS

    @property
    def rate(self) -> float | None:
        return self.count / self.out_of if self.out_of else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return interval(self.metric, self.count, self.out_of)

    def text(self) -> str:
        if self.rate is None:
            return f"— ({self.count}/0)"
        low, high = self.ci
        if self.is_ratio:
            return f"{self.rate:.2f} ({low:.2f}–{high:.2f}) {self.count}/{self.out_of}"
        return f"{self.rate:.1%} ({low:.1%}–{high:.1%}) {self.count}/{self.out_of}"


SHORT_ARM = {
    Arm.CHAMPION: gettext_lazy("champion"),
    Arm.CHALLENGER: gettext_lazy("challenger"),
    Arm.HOLDOUT: gettext_lazy("holdout"),
}


def group_label(version_number, arm: str) -> str:
    """``v3 · challenger``; a group without a version (no contact named one) reads ``— · holdout``."""
    return f"{'v' + str(version_number) if version_number else '—'} · {SHORT_ARM[Arm(arm)]}"


def chart(metric: str, cells: list[tuple[str, Cell]]) -> dict:
    """Bars (rate) with whiskers (95% interval) for each version and arm; a share on a 0-100% scale, a count per
    cured instalment on a scale to the highest interval. Each bar says whether it differs from the first group (the
    champion of the newest version, when there is one) or may be noise (the intervals overlap)."""
    shown = [(label, c) for label, c in cells if c.out_of]
    top = 1.0
    if metric in OutcomeFigure.RATIOS:
        top = max([c.ci[1] for _label, c in shown] + [1.0])
    reference = shown[0][1] if shown else None
    bars = []
    for n, (label, cell) in enumerate(shown):
        low, high = cell.ci
        y = n * ROW_HEIGHT + 4
        differs = n > 0 and reference is not None and (low > reference.ci[1] or high < reference.ci[0])
        bars.append(
            {
                "label": label,
                "y": y,
                "text_y": y + 13,
                "width": round(BAR_WIDTH * cell.rate / top, 1),
                "low_x": round(LABEL_WIDTH + BAR_WIDTH * low / top, 1),
                "high_x": round(LABEL_WIDTH + BAR_WIDTH * high / top, 1),
                "mid_y": y + 8,
                "value": cell.text(),
                "verdict": "" if n == 0 else (_("differs") if differs else _("may be noise")),
            }
        )
    return {
        "metric": metric,
        "label": Metric(metric).label,
        "bars": bars,
        "height": max(len(bars), 1) * ROW_HEIGHT + 8,
        "width": CHART_WIDTH,
        "label_width": LABEL_WIDTH,
        "value_x": LABEL_WIDTH + BAR_WIDTH + 8,
    }


def tier_figures(tier: CreditTier):
    """The tier's figures pooled by (version, arm) per metric, and by (cohort, version, arm)."""
    pooled: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    by_cohort: dict[tuple, dict[str, Cell]] = defaultdict(dict)
    for number, arm, cohort, metric, k, n in (
        OutcomeFigure.objects.filter(tier=tier)
        .order_by("-policy_version__number", "arm", "cohort")
        .values_list("policy_version__number", "arm", "cohort", "metric", "numerator", "denominator")
    ):
        pooled[(number, arm, metric)][0] += k
        pooled[(number, arm, metric)][1] += n
        by_cohort[(cohort, number, arm)][metric] = Cell(metric, k, n)
    groups = sorted(
        {(number, arm) for number, arm, _m in pooled},
        key=lambda g: (-(g[0] or 0), Arm.values.index(g[1])),
    )
    charts = [
        chart(metric, [(group_label(*g), Cell(metric, *pooled[(*g, metric)])) for g in groups])
        for metric in Metric.values
    ]
    rows = [
        {
            "cohort": cohort,
            "group": group_label(number, arm),
            "cells": [cells.get(m, Cell(m, 0, 0)).text() for m in TABLE_METRICS],
        }
        for (cohort, number, arm), cells in sorted(
            by_cohort.items(), key=lambda item: (item[0][0], -(item[0][1] or 0), item[0][2]), reverse=True
        )
    ]
    return charts, rows


def outcomes_view(request: HttpRequest) -> HttpResponse:
    """GET ``?tier=<id>``: the tier's charts and cohort table. POST: export the figures (``format``, the tier)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    tiers = list(CreditTier.objects.order_by("min_score"))
    chosen = request.POST.get("tier") or request.GET.get("tier")
    tier = next((t for t in tiers if str(t.pk) == chosen), tiers[0] if tiers else None)
    here = reverse("operator:strategy_outcomes")
    if request.method == "POST":
        try:
            job = start_export(
                request.user,
                "outcomes",
                request.POST.get("format", "csv"),
                {"tier": tier.code if tier else ""},
            )
        except (ExportError, PermissionError) as exc:
            if isinstance(exc, PermissionError):
                raise PermissionDenied from exc
            messages.error(request, str(exc))
            return HttpResponseRedirect(here)
        if job.status == ExportJob.Status.DONE:
            return export_file_response(job)
        return HttpResponseRedirect(reverse("admin:core_exportjob_change", args=[job.pk]))
    charts, rows = tier_figures(tier) if tier else ([], [])
    computed = OutcomeFigure.objects.order_by("-computed_at").values_list("computed_at", flat=True).first()
    context = {
        **admin.site.each_context(request),
        "title": _("Outcomes by policy version and arm"),
        "tiers": tiers,
        "tier": tier,
        "charts": charts,
        "rows": rows,
        "table_metrics": [Metric(m).label for m in TABLE_METRICS],
        "computed_at": computed,
        "may_export": may_export(request.user, "outcomes"),
        "formats": [ExportJob.Format.CSV, ExportJob.Format.XLSX],
    }
    return TemplateResponse(request, "strategy/outcomes.html", context)
