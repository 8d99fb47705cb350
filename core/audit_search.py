"""What the audit trail's search box finds: an object id, the start of an action code, or everything recorded
about a subject the apps above know by a reference (a customer: their record, loans, payments, messages,
cases, calls and promises).

Core knows no app: the project registers subject finders (``register_subject_finder``) that turn a term into
the audit objects it names, ``{object_type: [object_id, ...]}``. The admin's search and the audit export's
``q`` filter both call ``audit_search_q``, so an export holds exactly the events the search showed.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Q

SubjectFinder = Callable[[str], dict[str, list[str]]]

_FINDERS: list[SubjectFinder] = []


def register_subject_finder(finder: SubjectFinder) -> None:
    """Add ``finder`` (once, however many times the app is made ready)."""
    if finder not in _FINDERS:
        _FINDERS.append(finder)


def audit_search_q(term: str) -> Q:
    """Events about the object ``term`` is the id of, whose action code starts with ``term``, or about anything
    a registered finder says ``term`` names. Each finder costs a few queries, whatever the trail's size; the
    events are then found by their (object type, object id) index."""
    term = term.strip()
    if not term:
        return Q()
    q = Q(object_id=term) | Q(action__startswith=term.lower())
    for subject in _subjects(term):
        q |= subject
    return q


def audit_subject_q(term: str) -> Q:
    """Events about anything a registered finder says ``term`` names (a customer's reference: their record,
    loans, payments, messages, cases, calls and promises); no event when it names nothing."""
    q = Q(pk__in=[])
    for subject in _subjects(term.strip()) if term.strip() else ():
        q |= subject
    return q


def _subjects(term: str) -> list[Q]:
    return [
        Q(object_type=object_type, object_id__in=ids)
        for finder in _FINDERS
        for object_type, ids in finder(term).items()
        if ids
    ]
