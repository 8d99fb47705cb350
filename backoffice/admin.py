"""Admin pieces every app shares: configuration changes are written to the audit trail with before/after."""

from __future__ import annotations

import hashlib
import json

from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.paginator import Paginator
from django.db import connection, models, transaction
from django.forms.models import model_to_dict
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from .audit import log_event
from .masking import Masker, masker_for

# The product's name on every admin page, in the operator's language; "View site" would lead nowhere (the back
# office has no public site), so it is not offered and "/" leads to the dashboard.
admin.site.site_header = _("Repayments & Collections")
admin.site.site_title = _("Repayments & Collections")
admin.site.index_title = _("Today's board")
admin.site.site_url = None

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
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
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


# --- Roles and users: changes to groups (roles) and accounts are configuration too ------------------------
# Importing Django's auth admin first registers its classes, so they can be replaced here whatever the order
# in which the admin modules are discovered.
from django.contrib.auth import admin as auth_admin  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402


class AuditedGroupAdmin(AuditedAdminMixin, auth_admin.GroupAdmin):
    pass


class AuditedUserAdmin(AuditedAdminMixin, auth_admin.UserAdmin):
    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            user = self.get_object(request, id)
            # Only the fact is recorded, never the password or its hash.
            log_event("auth.user.password_changed", actor=request.user, obj=user)
        return response


for _model, _model_admin in ((Group, AuditedGroupAdmin), (get_user_model(), AuditedUserAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)

# --- Loan book exports from the admin (django-import-export's "Export" button) -----------------------------


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


# --- django-q2's task admins: resubmitting a task is a change, not something viewing allows ------------------
from django_q import admin as q_admin  # noqa: E402  (registers django-q2's admins, replaced below)
from django_q.models import Failure, OrmQ, Schedule, Success  # noqa: E402


@admin.action(description=_("Resubmit selected tasks to queue"), permissions=["resubmit"])
def resubmit_task(modeladmin, request, queryset):
    names = list(queryset.values_list("name", flat=True)[:1000])
    with transaction.atomic():
        q_admin.resubmit_task(modeladmin, request, queryset)
        log_event(
            f"django_q.{modeladmin.opts.model_name}.resubmitted",
            actor=request.user,
            object_type=modeladmin.opts.label,
            after={"tasks": names},
        )


class ResubmitPermissionMixin:
    """django-q2 offers "resubmit" to anyone who may view the tasks; here it needs change (and, for failures,
    which it deletes, delete) permission on the model."""

    actions = [resubmit_task]
    paginator = LargeTablePaginator
    show_full_result_count = False
    # Listing the distinct groups and clusters would read the whole table; the search box finds a group.
    list_filter = ()

    def has_resubmit_permission(self, request) -> bool:
        return self.has_change_permission(request)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


class SuccessAdmin(ResubmitPermissionMixin, q_admin.TaskAdmin):
    pass


class FailureAdmin(ResubmitPermissionMixin, q_admin.FailAdmin):
    def has_resubmit_permission(self, request) -> bool:
        return self.has_change_permission(request) and self.has_delete_permission(request)


class AuditedScheduleAdmin(AuditedAdminMixin, q_admin.ScheduleAdmin):
    pass


class QueueAdmin(q_admin.QueueAdmin):
    paginator = LargeTablePaginator
    show_full_result_count = False
    list_filter = ()


for _model, _model_admin in (
    (Success, SuccessAdmin),
    (Failure, FailureAdmin),
    (Schedule, AuditedScheduleAdmin),
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)
if admin.site.is_registered(OrmQ):
    admin.site.unregister(OrmQ)
    admin.site.register(OrmQ, QueueAdmin)


# --- django-axes: current lockouts, lifted by deleting them (audited); no action for those who may only view --
from axes import admin as axes_admin  # noqa: E402  (AXES_ENABLE_ADMIN is off: nothing registered by itself)
from axes.models import AccessAttempt  # noqa: E402


class LockoutAdmin(AuditedAdminMixin, axes_admin.AccessAttemptAdmin):
    """Failed log-in attempts per user name and address; deleting one lifts its lockout
    (``axes.accessattempt.deleted`` in the audit trail)."""

    actions = []


admin.site.register(AccessAttempt, LockoutAdmin)

from . import compliance_admin, pipeline_admin  # noqa: E402, F401  (logs and exports; pipeline runs)
