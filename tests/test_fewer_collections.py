"""The daily run collects garbage rarely while it runs (``core.heap.fewer_collections``) and puts the collector
back as it was afterwards, also when a step fails."""

from __future__ import annotations

import gc

import pytest

from core.heap import THRESHOLDS, fewer_collections


def test_it_raises_the_thresholds_and_freezes_what_is_alive_then_puts_both_back():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_it_puts_the_collector_back_when_the_block_fails():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a step failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.django_db
def test_the_pipeline_runs_with_fewer_collections(monkeypatch):
    import datetime as dt

    from backoffice import jobs

    seen = []
    monkeypatch.setattr(
        jobs, "pipeline_steps", lambda: [("plan", lambda now: seen.append(gc.get_threshold()) or {})]
    )
    monkeypatch.setattr(jobs, "anchor_quietly", lambda now: None)
    jobs.run_pipeline(dt.datetime(2026, 11, 30, 2, 30, tzinfo=dt.timezone.utc))
    assert seen == [THRESHOLDS]
