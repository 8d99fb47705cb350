"""``field__any_of=[...]``: the ``in`` lookup for long lists of values in the daily jobs.

``IN (%s, %s, ...)`` with thousands of values makes a statement longer than psycopg's statement cache takes
(4 KB), so the driver parses the whole text again, placeholder by placeholder, on every execution, and Django
prepares each value on its own. On PostgreSQL ``any_of`` sends the list as ONE array parameter instead,
``= ANY(%s::type[])``: a short statement parsed once. On SQLite, whose statements take a limited number of
parameters (32,766 by default, 999 on old builds: "too many SQL variables"), a list of whole numbers or texts is
ONE JSON parameter, ``IN (SELECT value FROM json_each(%s))`` (still an index search), so a list of any length
is one statement; other values are exactly ``in``. Values are plain values (ids rather than model instances);
``None`` never matches, an empty list matches nothing, as with ``in``.
"""

from __future__ import annotations

import json
import re

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db.models import Field, ForeignObject, IntegerField, Q
from django.db.models.expressions import Col
from django.db.models.fields import AutoFieldMixin
from django.db.models.fields.related_lookups import RelatedIn
from django.db.models.lookups import In, Lookup

# A whole number goes to SQLite and PostgreSQL (the only databases ``any_of`` handles itself) as it is through these.
_PLAIN_DB_PREP = frozenset({IntegerField.get_db_prep_value, AutoFieldMixin.get_db_prep_value})


def _integer_column(lhs) -> bool:
    """Whether ``lhs`` is a column of Django's own whole numbers (an id, a foreign key to one): the field would
    prepare a whole number into itself, so a list of them is taken as it is."""
    if type(lhs) is not Col:
        return False
    field = lhs.output_field
    if field.is_relation:
        field = getattr(field, "target_field", None)
    return (
        isinstance(field, IntegerField)
        and type(field).get_prep_value is IntegerField.get_prep_value
        and type(field).get_db_prep_value in _PLAIN_DB_PREP
    )


class AnyOfMixin:
    lookup_name = "any_of"
    _whole_numbers = False

    def get_prep_lookup(self):
        # A chunk's thousands of ids, each prepared by its field (and, on a foreign key, normalised first):
        # most of the time of building a daily job's or an import's query.
        rhs = self.rhs
        if type(rhs) in (list, tuple, set, frozenset) and _integer_column(self.lhs):
            values = list(rhs)
            if all(type(v) is int or v is None for v in values):
                self._whole_numbers = True
                return values
        return super().get_prep_lookup()

    def _db_values(self, field, connection) -> list:
        values = list(dict.fromkeys(v for v in self.rhs if v is not None))
        if self._whole_numbers:
            return values
        return [field.get_db_prep_value(v, connection, prepared=True) for v in values]

    def as_postgresql(self, compiler, connection):
        if not self.rhs_is_direct_value():
            return self.as_sql(compiler, connection)
        field = self.lhs.output_field
        array = self._db_values(field, connection)
        if not array:
            raise EmptyResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s::{array_element_type(field, connection)}[])", (*lhs_params, array)

    def as_sqlite(self, compiler, connection):
        if not self.rhs_is_direct_value() or not connection.features.supports_json_field:
            return self.as_sql(compiler, connection)
        field = self.lhs.output_field
        prepared = self._db_values(field, connection)
        if not prepared:
            raise EmptyResultSet
        # Whole numbers and texts come back from json_each as they are (INTEGER, TEXT); the column's affinity
        # applies to them as to ``IN (%s, ...)`` parameters. Anything else keeps the plain ``in``.
        if not all(type(v) is int or type(v) is str for v in prepared):
            return self.as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        payload = json.dumps(prepared, ensure_ascii=False)
        return f"{lhs} IN (SELECT value FROM json_each(%s))", (*lhs_params, payload)


def within_bounds(field_name: str, values) -> Q:
    """``field_name`` between the least and the greatest of ``values`` (``None`` left out; every row when there
    is none): a condition that changes nothing beside ``field_name__any_of=values``, for PostgreSQL's planner.
    Given a list of a few thousand ids it estimates the rows matched as if the ids were spread over the whole
    table and may read the whole table (or join it whole) once per chunk; told that they lie in one range, it
    reads the index over that range. Worth it where the list is a slice of ids in order (a chunk of the book)."""
    present = [v for v in values if v is not None]
    if not present:
        return Q()
    return Q(**{f"{field_name}__gte": min(present), f"{field_name}__lte": max(present)})


class WithinBoundsOf(Lookup):
    """``field__within_bounds_of=[...]``: ``within_bounds`` for values the database orders its own way (texts, by
    its collation, which Python's order of strings does not follow): on PostgreSQL the least and the greatest are
    taken by the database itself, ``BETWEEN (SELECT min(v) FROM unnest(%s)) AND (SELECT max(v) ...)``, so no row
    of the list can fall outside; the planner, told of a range, reads the index over it where a list alone made it
    read the whole table. Elsewhere no condition at all (SQLite's planner searches the index for each value of a
    list already). Meant beside ``field__any_of`` with the same list."""

    lookup_name = "within_bounds_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        raise FullResultSet

    def as_postgresql(self, compiler, connection):
        field = self.lhs.output_field
        values = [field.get_db_prep_value(v, connection, prepared=False) for v in self.rhs if v is not None]
        if not values:
            raise FullResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        array = f"unnest(%s::{array_element_type(field, connection)}[]) AS v"
        return (
            f"{lhs} BETWEEN (SELECT min(v) FROM {array}) AND (SELECT max(v) FROM {array})",
            (*lhs_params, values, values),
        )


def array_element_type(field, connection) -> str:
    """The field's type for an array parameter, without its length or precision: a cast to ``varchar(16)`` or
    ``numeric(12, 2)`` would cut or round a longer value into one that matches (or is written) silently."""
    return re.sub(r"\(.*?\)", "", field.cast_db_type(connection)).strip()


class AnyOf(AnyOfMixin, In):
    pass


class RelatedAnyOf(AnyOfMixin, RelatedIn):
    """``any_of`` on a foreign key (``loan__any_of=[ids]``, ``loan_id__any_of=[ids]``)."""


def register() -> None:
    Field.register_lookup(AnyOf)
    Field.register_lookup(WithinBoundsOf)
    ForeignObject.register_lookup(RelatedAnyOf)
