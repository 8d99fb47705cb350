"""The daily pipeline, in the order SPEC.md gives. ``run_jobs`` and the django-q2 schedules both run it.

Each step is a dotted path to ``function(now) -> dict`` (counts of what it did); every step is idempotent, so
running the pipeline twice for the same moment changes nothing more.
"""

from __future__ import annotations

import datetime as dt

from django.utils.module_loading import import_string

from core.audit_anchors import anchor_quietly
from core.heap import fewer_collections

from .pipeline_runs import record_step

PIPELINE: list[tuple[str, str]] = [
    ("apply_scores", "loans.scores.apply_credit_scores"),
    ("autodebit", "loans.autodebit.run_autodebit"),
    # A policy saved by a script or a bulk write gets its version before the day is decided under it.
    ("policy_versions", "strategy.versions.record_changed_versions"),
    # The day's engine (strategy.engine): the same steps the workers run per chunk and the policy preview runs.
    ("plan", "strategy.engine.plan"),
    ("collections", "strategy.engine.advance"),
    ("dispatch", "strategy.engine.dispatch"),
    ("anchor_audit", "core.audit_anchors.write_anchor"),
]


def pipeline_steps() -> list[tuple[str, object]]:
    """The steps of ``PIPELINE`` with their functions. A step that cannot be imported is an error, never
    skipped: a pipeline quietly missing a step would still report success."""
    return [(name, import_string(path)) for name, path in PIPELINE]


def run_pipeline(now: dt.datetime, run=None) -> dict[str, dict]:
    """Run the steps in order. The audit head is anchored after each step (a broken anchor file is logged, not
    fatal, there), and ``anchor_audit`` ends the pipeline, failing loudly if the anchor file is broken. With a
    ``PipelineRun``, each step's counts are written to it as the step finishes (its progress). The garbage
    collector collects rarely meanwhile (``core.heap.fewer_collections``)."""

    results = {}
    with fewer_collections():
        for name, func in pipeline_steps():
            results[name] = func(now) or {}
            if name != "anchor_audit":
                anchor_quietly(now)
            record_step(run, name, results[name])
    return results
