"""Admin pieces every app shares: configuration changes are written to the audit trail with before/after."""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.forms.models import model_to_dict

from .audit import log_event


def snapshot(obj) -> dict:
    data = model_to_dict(obj)
    return {k: (list(v.values_list("pk", flat=True)) if hasattr(v, "values_list") else v) for k, v in data.items()}


class AuditedAdminMixin:
    """Writes ``<app>.<model>.created|changed|deleted`` with before and after, in the same transaction."""

    def _action(self, obj, verb: str) -> str:
        return f"{obj._meta.app_label}.{obj._meta.model_name}.{verb}"

    def save_model(self, request, obj, form, change):
        before = None
        if change and obj.pk:
            old = type(obj)._default_manager.filter(pk=obj.pk).first()
            before = snapshot(old) if old else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            log_event(self._action(obj, "changed" if change else "created"), actor=request.user, obj=obj, before=before, after=snapshot(obj))

    def delete_model(self, request, obj):
        before = snapshot(obj)
        label, pk = obj._meta.label, obj.pk
        with transaction.atomic():
            super().delete_model(request, obj)
            log_event(self._action(obj, "deleted"), actor=request.user, object_type=label, object_id=str(pk), before=before)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)

    def save_formset(self, request, form, formset, change):
        # Inline rows (rules, escalation steps on a tier) are configuration too.
        with transaction.atomic():
            befores = {}
            for f in formset.forms:
                if f.instance.pk and f.has_changed():
                    old = type(f.instance)._default_manager.filter(pk=f.instance.pk).first()
                    befores[f.instance.pk] = snapshot(old) if old else None
            instances = formset.save(commit=False)
            for obj in formset.deleted_objects:
                log_event(self._action(obj, "deleted"), actor=request.user, object_type=obj._meta.label, object_id=str(obj.pk), before=snapshot(obj))
                obj.delete()
            for obj in instances:
                existed = obj.pk in befores
                obj.save()
                log_event(self._action(obj, "changed" if existed else "created"), actor=request.user, obj=obj, before=befores.get(obj.pk), after=snapshot(obj))
            formset.save_m2m()


class AuditedModelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass
