"""The audit trail's ``hash`` carries no index (core.0008): nothing looks an event up by it, and a random-order
index was paid for by every event written. The append-only triggers survive the rebuild of the
table the migration does on SQLite, and an import's write transaction has the SQLite page cache it is given."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from core.audit import log_event
from core.audit_triggers import missing_audit_triggers
from core.imports.fast_path import write_page_cache
from core.models import AuditEvent

pytestmark = pytest.mark.django_db


def _indexed_columns() -> list[list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, AuditEvent._meta.db_table)
    return [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]


def test_it_keeps_no_index_on_the_hash_but_keeps_seq_unique_and_the_triggers():
    indexed = _indexed_columns()
    assert not [columns for columns in indexed if "hash" in columns]
    assert any(columns[:1] == ["seq"] for columns in indexed)
    assert missing_audit_triggers(connection) == []


def test_the_chain_still_verifies_without_the_index():
    from core.audit_verification import verify_chain

    for n in range(3):
        log_event("tests.something.happened", after={"n": n})
    found = verify_chain(check_anchors=False)
    assert found.is_intact and found.count >= 3, found.problem


@override_settings(IMPORT_SQLITE_CACHE_MB=48)
def test_an_import_writes_with_its_own_page_cache_and_gives_it_back():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's page cache")

    def cache_size() -> int:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size")
            return cursor.fetchone()[0]

    before = cache_size()
    with write_page_cache(connection.alias):
        assert cache_size() == -48 * 1024
    assert cache_size() == before != -48 * 1024
    with override_settings(IMPORT_SQLITE_CACHE_MB=0), write_page_cache(connection.alias):
        assert cache_size() == before
