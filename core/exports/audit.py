"""The audit trail as an export kind: every event in ``seq`` order, before/after masked unless allowed."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet

from ..audit_search import audit_search_q, audit_subject_q
from ..masking import mask_value
from ..models import AuditEvent
from .kinds import ExportKind, register_kind, within
from .rows import CHUNK_SIZE, moment

AUDIT_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "prev_hash",
    "hash",
)
AUDIT_FILTERS = ("since", "until", "action_prefix", "actor", "object_type", "object_id", "customer_ref", "q")


def audit_queryset(filters: dict[str, str]) -> QuerySet:
    """``since``/``until`` on ``at``; ``customer_ref``: the events about that customer (their record, loans,
    payments, messages, cases, calls, promises); ``q`` matches as the admin's search box does (one term)."""
    qs = within(AuditEvent.objects.order_by("seq"), "at", filters)
    for key in ("actor", "object_type", "object_id"):
        if key in filters:
            qs = qs.filter(**{key: filters[key]})
    if "action_prefix" in filters:
        qs = qs.filter(action__startswith=filters["action_prefix"])
    if "customer_ref" in filters:
        qs = qs.filter(audit_subject_q(filters["customer_ref"]))
    if "q" in filters:
        qs = qs.filter(audit_search_q(filters["q"]))
    return qs


def audit_batches(qs: QuerySet, *, masked: bool, fmt: str = "") -> Iterator[list[tuple]]:
    """The audit rows (tuples in ``AUDIT_COLUMNS`` order), masked if asked, a chunk at a time."""
    batch: list[tuple] = []
    for seq, at, actor, action, object_type, object_id, before, after, prev_hash, hash_ in qs.values_list(
        *AUDIT_COLUMNS
    ).iterator(chunk_size=CHUNK_SIZE):
        if masked:
            before, after = mask_value(before), mask_value(after)
        batch.append(
            (seq, moment(at), actor, action, object_type, object_id, before, after, prev_hash, hash_)
        )
        if len(batch) == CHUNK_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


AUDIT = ExportKind(
    name="audit",
    columns=AUDIT_COLUMNS,
    filters=AUDIT_FILTERS,
    permission="core.export_auditevent",
    queryset=audit_queryset,
    batches=audit_batches,
    through_seq=True,
)


def register() -> None:
    register_kind(AUDIT)
