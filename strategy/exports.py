"""The outcome figures as an export kind (CSV/XLSX/JSON with a manifest, like the logs): one row per tier,
version, arm, cohort month and figure, with the count, what it is out of, the rate and its 95% interval."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet

from core.exports.kinds import ExportKind, register_kind
from core.exports.rows import CHUNK_SIZE, moment

from .models import OutcomeFigure
from .stats import poisson_ratio_interval, wilson

OUTCOME_COLUMNS = (
    "tier",
    "policy_version",
    "arm",
    "cohort",
    "metric",
    "count",
    "out_of",
    "rate",
    "ci95_low",
    "ci95_high",
    "computed_at",
)
OUTCOME_FILTERS = ("tier", "arm", "metric")


def outcome_queryset(filters: dict[str, str]) -> QuerySet:
    """``tier`` (its code), ``arm`` and ``metric`` narrow the figures."""
    qs = OutcomeFigure.objects.order_by(
        "tier__code", "cohort", "policy_version__number", "arm", "metric", "id"
    )
    if "tier" in filters:
        qs = qs.filter(tier__code=filters["tier"])
    for key in ("arm", "metric"):
        if key in filters:
            qs = qs.filter(**{key: filters[key]})
    return qs


def interval(metric: str, count: int, out_of: int) -> tuple[float, float] | None:
    """The 95% interval of a figure: Wilson's for a share, a Poisson one for a count per cured instalment."""
    if metric in OutcomeFigure.RATIOS:
        return poisson_ratio_interval(count, out_of)
    return wilson(count, out_of)


def outcome_batches(qs: QuerySet, *, masked: bool, fmt: str = "") -> Iterator[list[tuple]]:
    """Rows in ``OUTCOME_COLUMNS`` order (no personal data: nothing to mask), a chunk at a time."""
    batch: list[tuple] = []
    for code, number, arm, cohort, metric, count, out_of, computed_at in qs.values_list(
        "tier__code",
        "policy_version__number",
        "arm",
        "cohort",
        "metric",
        "numerator",
        "denominator",
        "computed_at",
    ).iterator(chunk_size=CHUNK_SIZE):
        ci = interval(metric, count, out_of)
        batch.append(
            (
                code,
                f"v{number}" if number else "",
                arm,
                cohort.isoformat(),
                metric,
                count,
                out_of,
                round(count / out_of, 6) if out_of else None,
                round(ci[0], 6) if ci else None,
                round(ci[1], 6) if ci else None,
                moment(computed_at),
            )
        )
        if len(batch) == CHUNK_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


OUTCOMES = ExportKind(
    name="outcomes",
    columns=OUTCOME_COLUMNS,
    filters=OUTCOME_FILTERS,
    permission="strategy.export_outcomefigure",
    queryset=outcome_queryset,
    batches=outcome_batches,
)


def register() -> None:
    register_kind(OUTCOMES)
