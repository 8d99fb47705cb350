"""Each row's existing object, found by the resource's key columns, loaded for the whole file at once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from import_export.instance_loaders import ModelInstanceLoader

from ..lookups import within_bounds
from .widgets import lookup_chunk


def key_part(value: Any) -> Any:
    return value.pk if isinstance(value, models.Model) else value


class KeyedInstanceLoader(ModelInstanceLoader):
    """Finds each row's existing object by the resource's key columns, loading them for the whole file at once.

    The existing objects of every key in the file are read in a few queries up front (not one per row). A
    key cell that cannot be read (unknown reference, bad date) becomes a validation error of that column, so
    it is reported with its line and column like any other bad cell. A key that repeats an earlier line of the
    file is an error too (``BookResource.import_instance``).
    """

    def __init__(self, resource, dataset=None):
        super().__init__(resource, dataset)
        self.key_fields = [resource.fields[k] for k in resource.get_import_id_fields()]
        self.instances: dict[tuple, Any] = {}
        self.first_line: dict[tuple, int] = {}
        self.repeats: dict[int, int] = {}  # row number -> row number it repeats
        keys = []
        if dataset is not None and dataset.headers:
            for number, row in enumerate(dataset.dict, 1):
                try:
                    key = self.key_of(row)
                except (ValueError, ValidationError):
                    continue
                if key is None:
                    continue
                if key in self.first_line:
                    self.repeats[number] = self.first_line[key]
                else:
                    self.first_line[key] = number
                    keys.append(key)
        self._preload(keys)

    def key_of(self, row) -> tuple | None:
        values = tuple(key_part(field.clean(row)) for field in self.key_fields)
        return None if any(v in (None, "") for v in values) else values

    def _preload(self, keys: list[tuple], related: bool = True) -> None:
        """The existing objects of ``keys`` into ``instances``; ``related=False`` without the resource queryset's
        related objects (the fast path renders no row, so it does not need them)."""
        if not keys:
            return
        model = self.resource._meta.model
        attnames = [model._meta.get_field(f.attribute).attname for f in self.key_fields]
        first = attnames[0]
        firsts = sorted({k[0] for k in keys}, key=str)
        queryset = self.get_queryset().order_by()  # a dictionary is filled: no ORDER BY (nor its joins)
        if not related:
            queryset = queryset.select_related(None)
        step = lookup_chunk(queryset.db)
        # The list is also given as a range, for PostgreSQL's planner: a file's chunk names consecutive loans or
        # refs, and given the list alone it read the whole table, growing as the file's rows were written, once per
        # chunk. Whole numbers (a loan's id) by their least and greatest (``within_bounds``); anything else (a
        # ref) by the database's own least and greatest (its collation orders texts, not Python).
        whole_numbers = all(type(k) is int for k in firsts)
        for start in range(0, len(firsts), step):
            batch = firsts[start : start + step]
            bounds = (
                within_bounds(first, batch) if whole_numbers else Q(**{f"{first}__within_bounds_of": batch})
            )
            for obj in queryset.filter(bounds, **{f"{first}__any_of": batch}):
                self.instances[tuple(getattr(obj, a) for a in attnames)] = obj

    def get_instance(self, row):
        errors = {}
        values = []
        for field in self.key_fields:
            try:
                values.append(key_part(field.clean(row)))
            except ValueError as exc:
                errors[field.attribute] = ValidationError(str(exc), code="invalid")
        if errors:
            raise ValidationError(errors)
        if any(v in (None, "") for v in values):
            return None
        return self.instances.get(tuple(values))
