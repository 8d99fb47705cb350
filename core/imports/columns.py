"""The columns of the fast path: each imported column's cell cleaned by its widget and validated by its model field,
remembered per distinct cell when the outcome depends on the cell alone (a bounded memory: ``trim``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import signals
from django.db.models.base import ModelState
from django.forms.models import model_to_dict
from import_export.fields import NOT_PROVIDED

from .widgets import (
    BoolWidget,
    IntWidget,
    ISODateTimeWidget,
    ISODateWidget,
    ListWidget,
    LocalTimeWidget,
    MoneyWidget,
    RefWidget,
    TextWidget,
)

#: Distinct cells a column remembers; past that its memory starts again (a file of a million distinct
#: moments must not keep a million of them).
MEMO_LIMIT = 20_000


def validate_field(f, instance) -> tuple | list | None:
    """``Model.clean_fields`` for one field: None when skipped (blank and empty), ``(value,)`` the cleaned value,
    or the field's error list."""
    raw = getattr(instance, f.attname)
    if f.blank and raw in f.empty_values:
        return None
    if isinstance(raw, models.expressions.DatabaseDefault):
        return None
    try:
        return (f.clean(raw, instance),)
    except ValidationError as exc:
        return exc.error_list


def blank_instance_factory(model) -> Callable[[], models.Model]:
    """``model()``, given its defaults as positional values (Django's faster way in): the same instance, with
    a default that is a callable or a database default still made for each instance."""
    fields = model._meta.concrete_fields
    if any(f.column is None or f.generated for f in fields):
        return model
    values = [f.get_default() for f in fields]
    each_time = [
        (i, f)
        for i, f in enumerate(fields)
        if f.has_db_default() or (f.has_default() and callable(f.default))
    ]
    if not each_time:
        if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
            return lambda: model(*values)
        # What ``model(*values)`` makes, without its signals' sending and its loop over the fields (a file's
        # rows each start from one): the same attributes, a state of its own.
        made = model(*values).__dict__
        attributes = {name: value for name, value in made.items() if name != "_state"}
        new = model.__new__

        def blank():
            obj = new(model)
            obj.__dict__.update(attributes)
            obj._state = ModelState()
            return obj

        return blank

    def make():
        args = list(values)
        for i, f in each_time:
            args[i] = f.get_default()
        return model(*args)

    return make


def surely_valid_check(f) -> Callable[[Any], bool] | None:
    """For a column whose cells are mostly distinct (a reference, a moment), a test of a cleaned value that
    ``f.clean`` would surely take as it is, so the fast path need not call it: a Django ``DateTimeField`` or
    ``CharField`` of its own (no choices, no validators but the length's). None for any other field; a value
    the test does not pass goes through ``f.clean`` as before (and its errors are the field's own)."""
    if f.choices or not f.editable:
        return None
    if type(f) is models.DateTimeField and not f.validators and settings.USE_TZ:
        return lambda value: type(value) is dt.datetime and value.utcoffset() is not None
    if type(f) is models.CharField and f.max_length is not None:
        if any(type(v) is not MaxLengthValidator or v.limit_value != f.max_length for v in f.validators):
            return None
        limit, blank = f.max_length, f.blank
        return lambda value: type(value) is str and len(value) <= limit and (blank or value != "")
    return None


#: Widgets whose ``clean`` depends on the cell alone (not on the row, the database or the time): the fast path
#: reads each distinct cell of their columns once. Compared by function, so a subclass that overrides
#: ``clean`` (``InstallmentSeqWidget`` reads the row) is cleaned row by row.
PURE_WIDGET_CLEANS = frozenset(
    {
        TextWidget.clean,
        BoolWidget.clean,
        IntWidget.clean,
        MoneyWidget.clean,
        ISODateWidget.clean,
        ISODateTimeWidget.clean,
        LocalTimeWidget.clean,
        ListWidget.clean,
    }
)
MISS = object()


class _Failed:
    """A cell its widget refused (the ``ValueError`` message), remembered for the next equal cell."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


class Column:
    """One imported column of the fast path: ``Field.clean`` of its cell, remembered per distinct text cell
    when the result depends on the cell alone, and the model field's own ``clean`` of that value likewise."""

    __slots__ = (
        "field",
        "index",
        "headers",
        "attribute",
        "sets_none",
        "memo",
        "memo_failures",
        "model_field",
        "model_memo",
        "is_ref",
        "surely_valid",
    )

    def __init__(self, field, headers: list[str], model_field):
        self.field = field
        self.headers = headers
        self.index = headers.index(field.column_name)
        self.attribute = field.attribute
        self.sets_none = field.saves_null_values
        widget_clean = getattr(type(field.widget), "clean", None)
        default = field.default
        pure_default = default is NOT_PROVIDED or not callable(default)
        self.memo: dict | None = None
        self.memo_failures = False
        self.is_ref = False
        if pure_default and widget_clean in PURE_WIDGET_CLEANS:
            self.memo, self.memo_failures = {}, True
        elif pure_default and widget_clean is RefWidget.clean:
            # A reference found stays found during the import; one not found is looked up again on each row.
            self.memo = {}
            self.is_ref = True
        # The model field's validation of the value, remembered per cell when it depends on the value alone:
        # Django's own non-relational fields (to_python, null/blank/choices, validators).
        self.model_field = None
        self.model_memo: dict | None = None
        self.surely_valid: Callable[[Any], bool] | None = None
        if model_field is not None and field.saves_null_values and self.memo is not None:
            if not model_field.is_relation and type(model_field).__module__.startswith("django.db.models."):
                self.model_field = model_field
                self.model_memo = {}
                self.surely_valid = surely_valid_check(model_field)

    def clean(self, values, row=None):
        """``Field.clean(row)``: the python value, or ``ValueError`` with the widget's message. ``row`` (the
        cells by column) is made from ``values`` when it is not given and the widget needs it."""
        memo = self.memo
        cell = values[self.index]
        if memo is None or (cell is not None and type(cell) is not str):  # a spreadsheet's typed cell
            return self.field.clean(row if row is not None else dict(zip(self.headers, values)))
        hit = memo.get(cell, MISS)
        if hit is MISS:
            try:
                hit = self.field.clean(row if row is not None else dict(zip(self.headers, values)))
            except ValueError as exc:
                if not self.memo_failures:
                    raise
                hit = _Failed(str(exc))
            memo[cell] = hit
        if type(hit) is _Failed:
            raise ValueError(hit.message)
        return hit

    def trim(self) -> None:
        """Forget the remembered cells when there are too many, and the references at every chunk (each chunk
        loads its own: a file's hundreds of thousands of loans are not kept)."""
        memo = self.memo
        if memo is not None and (self.is_ref or len(memo) > MEMO_LIMIT):
            memo.clear()
        if self.model_memo is not None and len(self.model_memo) > MEMO_LIMIT:
            self.model_memo.clear()


def object_values(obj: models.Model) -> dict[str, Any]:
    """An object's editable values as the admin's audit records them (foreign keys as ids, no primary key)."""
    return {k: v for k, v in model_to_dict(obj).items() if k != obj._meta.pk.name}
