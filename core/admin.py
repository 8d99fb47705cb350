"""Admin pieces every app shares: configuration changes are written to the audit trail with before/after,
personal data masked per request, large tables paged without counting, exports recorded."""

from __future__ import annotations

import hashlib
import json

from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.paginator import Paginator
from django.db import connection, models, transaction
from django.forms.models import model_to_dict
from django.utils.functional import cached_property

from .audit import log_event
from .masking import Masker, masker_for

# Never written to the audit trail: a password hash is a secret, the last log-in time is noise.
UNAUDITED_FIELDS = frozenset({"password", "last_login"})


def _plain(value):
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, list | tuple | set) or hasattr(value, "values_list"):
        items = list(value)
        if items and all(isinstance(v, Permission) for v in items):
            rows = Permission.objects.filter(pk__in=[v.pk for v in items])
            return sorted(
                f"{app}.{codename}"
                for app, codename in rows.values_list("content_type__app_label", "codename")
            )
        return sorted((_plain(v) for v in items), key=str)
    if hasattr(value, "name") and hasattr(value, "storage"):  # a file
        return value.name or ""
    return value


def snapshot(obj, form=None) -> dict:
    """The editable fields of ``obj`` as plain JSON values (many-to-many as sorted keys, permissions as
    ``app.codename``). With a bound ``form``, many-to-many values come from what the form is about to save."""
    data = model_to_dict(obj)
    if form is not None and getattr(form, "cleaned_data", None):
        for f in obj._meta.many_to_many:
            if f.name in form.cleaned_data and f.name in data:
                data[f.name] = list(form.cleaned_data[f.name])
    # The primary key is the event's object_id already.
    return {k: _plain(v) for k, v in data.items() if k not in UNAUDITED_FIELDS and k != obj._meta.pk.name}


class AuditedAdminMixin:
    """Writes ``<app>.<model>.created|changed|deleted`` with before and after, in the same transaction.

    A save that changes nothing writes nothing. Inline rows (rules or steps on a tier) are written too."""

    def _action(self, obj, verb: str) -> str:
        return f"{obj._meta.app_label}.{obj._meta.model_name}.{verb}"

    def save_model(self, request, obj, form, change):
        before = None
        if change and obj.pk:
            old = type(obj)._default_manager.filter(pk=obj.pk).first()
            before = snapshot(old) if old else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            after = snapshot(obj, form)
            if change and before == after:
                return
            log_event(
                self._action(obj, "changed" if change else "created"),
                actor=request.user,
                obj=obj,
                before=before,
                after=after,
            )

    def delete_model(self, request, obj):
        before = snapshot(obj)
        label, pk = obj._meta.label, obj.pk
        with transaction.atomic():
            super().delete_model(request, obj)
            log_event(
                self._action(obj, "deleted"),
                actor=request.user,
                object_type=label,
                object_id=str(pk),
                before=before,
            )

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)

    def save_formset(self, request, form, formset, change):
        with transaction.atomic():
            befores = {}
            for f in formset.forms:
                if f.instance.pk and f.has_changed():
                    old = type(f.instance)._default_manager.filter(pk=f.instance.pk).first()
                    befores[f.instance.pk] = snapshot(old) if old else None
            instances = formset.save(commit=False)
            for obj in formset.deleted_objects:
                log_event(
                    self._action(obj, "deleted"),
                    actor=request.user,
                    object_type=obj._meta.label,
                    object_id=str(obj.pk),
                    before=snapshot(obj),
                )
                obj.delete()
            for obj in instances:
                existed = obj.pk in befores
                obj.save()
                log_event(
                    self._action(obj, "changed" if existed else "created"),
                    actor=request.user,
                    obj=obj,
                    before=befores.get(obj.pk),
                    after=snapshot(obj),
                )
            formset.save_m2m()


class AuditedModelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass


class PersonalDataAdminMixin:
    """An admin whose rows hold personal data, for viewers with and without ``loans.view_personal_data``.

    One ModelAdmin instance serves every request at once, so the viewer's right is never kept on it: the
    queryset carries it on each row (``personal_data_visible``) and ``masker(obj)`` gives the row's
    ``Masker``. Without the right, the search box and the changelist's query parameters cannot reach the
    ``personal_fields`` (a search for a name or a phone would say whose the masked row is): search matches
    references only, and a lookup such as ``?phone__startswith=`` is refused."""

    personal_fields: tuple[str, ...] = ()

    def get_queryset(self, request):
        visible = masker_for(request).unmasked
        return (
            super()
            .get_queryset(request)
            .annotate(personal_data_visible=models.Value(visible, output_field=models.BooleanField()))
        )

    @staticmethod
    def masker(obj) -> Masker:
        return Masker(unmasked=bool(getattr(obj, "personal_data_visible", False)))

    def _is_personal(self, path: str) -> bool:
        path = path.lstrip("=^@")
        return any(path == f or path.startswith(f + "__") for f in self.personal_fields)

    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        if masker_for(request).unmasked:
            return fields
        return tuple(f for f in fields if not self._is_personal(f))

    def lookup_allowed(self, lookup, value, request=None):
        if request is not None and not masker_for(request).unmasked and self._is_personal(lookup):
            return False
        return super().lookup_allowed(lookup, value, request)


class LargeTablePaginator(Paginator):
    """A changelist paginator that never COUNTs a huge table.

    On PostgreSQL, once the table is big: an unfiltered list uses the planner's estimate of the table
    (``pg_class.reltuples``); a filtered list counts exactly up to ``EXACT_UP_TO`` matching rows (a capped
    count reads at most that many index entries) and beyond that uses the planner's estimate of the filtered
    query (EXPLAIN), so a filter matching millions of rows answers as fast as one matching a few. On SQLite
    (the embedded mode, small books) it counts. Use it with ``show_full_result_count = False``.
    """

    EXACT_BELOW = 50_000
    EXACT_UP_TO = 1_000

    def _table_estimate(self) -> int | None:
        """``reltuples`` of the table, or the sum of its partitions' for a partitioned table (autovacuum
        analyzes the partitions, never their parent, whose own figure stays unknown)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT CASE WHEN t.relkind = 'p' THEN (SELECT sum(greatest(c.reltuples, 0)) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = t.oid) ELSE t.reltuples END "
                "FROM pg_class t WHERE t.oid = %s::regclass",
                [self.object_list.model._meta.db_table],
            )
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] and row[0] > 0 else None

    def _query_estimate(self) -> int | None:
        sql, params = self.object_list.order_by().query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    @cached_property
    def count(self):
        qs = self.object_list
        if connection.vendor != "postgresql" or not hasattr(qs, "query"):
            return super().count
        estimate = self._table_estimate()
        if estimate is None or estimate < self.EXACT_BELOW:
            return super().count
        if not qs.query.where:
            return estimate
        capped = qs.order_by()[: self.EXACT_UP_TO + 1].count()
        if capped <= self.EXACT_UP_TO:
            return capped
        return max(self._query_estimate() or 0, capped)


# --- Exports from the admin (django-import-export's "Export" button) ---------------------------------------


class AuditedExportMixin:
    """For ``ExportMixin`` admins: every file downloaded from the "Export" button is recorded as
    ``backoffice.export.completed`` (user, model, format, the changelist filters, rows, SHA-256 of the file).

    An admin that hands masked rows to users without ``loans.view_personal_data`` says so with
    ``is_export_masked(request)``."""

    def is_export_masked(self, request) -> bool:
        return False

    def get_data_for_export(self, request, queryset, **kwargs):
        dataset = super().get_data_for_export(request, queryset, **kwargs)
        request._exported_rows = len(dataset)
        return dataset

    def get_export_data(self, file_format, request, queryset, **kwargs):
        data = super().get_export_data(file_format, request, queryset, **kwargs)
        raw = data if isinstance(data, bytes) else str(data).encode(kwargs.get("encoding") or "utf-8")
        filters = {k: v if len(v) > 1 else v[0] for k, v in sorted(request.GET.lists())}
        selected = request.POST.getlist("export_items")
        log_event(
            "backoffice.export.completed",
            actor=request.user,
            object_type=self.model._meta.label,
            after={
                "kind": self.model._meta.label,
                "format": file_format.get_title().lower(),
                "filters": {**filters, **({"selected": len(selected)} if selected else {})},
                "rows": getattr(request, "_exported_rows", None),
                "masked": self.is_export_masked(request),
                "sha256": hashlib.sha256(raw).hexdigest(),
            },
        )
        return data


from . import compliance_admin, export_jobs_admin  # noqa: E402, F401  (the audit trail, the export jobs)
