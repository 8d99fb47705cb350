"""The last anchors the trail recorded are read through an index of the anchors alone: walking the trail back
from its newest event to the last anchor read every event written since (the day's millions: 5 s at the end of
each import or export once the trail held 1,250,000 events on PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import connection

from core.audit import Event, append_events
from core.audit_anchor_file import anchor_events, last_anchor_records
from core.models import ANCHORED, AuditEvent

pytestmark = pytest.mark.django_db


def _events(action: str, count: int, **after) -> list[Event]:
    return [
        Event(action=action, actor="test", object_type="t", object_id=str(n), after=after)
        for n in range(count)
    ]


def _plan(queryset) -> str:
    """The query's plan; on PostgreSQL with what the table holds analysed and neither a whole-table scan nor a
    bitmap of the action's index on offer (a table of a few thousand rows is cheaper to read whole; at a
    million rows the choice was the backward walk of the seq index)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute(f"ANALYZE {AuditEvent._meta.db_table}")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_last_anchors_are_the_newest_anchor_events_read_by_their_own_index():
    append_events(_events("test.before", 5))
    append_events(_events(ANCHORED, 1, anchors=1))
    append_events(_events("test.between", 2000))
    append_events(_events(ANCHORED, 1, anchors=2))
    append_events(_events("test.after", 2000))

    records = last_anchor_records(n=2)
    anchors = list(AuditEvent.objects.filter(action=ANCHORED).order_by("-seq").values_list("seq", "hash"))
    assert [(r.seq, r.hash, r.anchors) for r in records] == [
        (anchors[0][0], anchors[0][1], 2),
        (anchors[1][0], anchors[1][1], 1),
    ]
    plan = _plan(anchor_events().values_list("seq", "hash", "after", "at")[:2])
    if connection.vendor == "postgresql":
        # Each month's partition has its own copy of the index (named after the partition).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'backoffice_auditevent%%' "
                "AND indexdef LIKE '%%backoffice.audit.anchored%%'"
            )
            anchor_indexes = {name for (name,) in cursor.fetchall()}
        assert "audit_anchor_seq_idx" in anchor_indexes
        assert any(f"using {name} " in plan for name in anchor_indexes), plan
        assert "seq_at" not in plan and "Filter" not in plan, plan
    else:  # SQLite searches the anchors by the action's index (or their own); never the whole trail
        assert "SEARCH backoffice_auditevent USING" in plan and "SCAN backoffice_auditevent" not in plan
