"""Pipeline runs in the admin: read-only for everyone; each row opens the run's progress page."""

from __future__ import annotations

from django.contrib import admin
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .models import PipelineRun


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "trigger", "user", "status", "progress")
    list_filter = ("status", "trigger")
    list_select_related = ("user",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("progress"))
    def progress(self, obj):
        url = reverse("operator:pipeline_run", kwargs={"run_id": obj.pk})
        return format_html('<a href="{}">{}%</a>', url, obj.progress_percent)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Viewing a run is its progress page; anything else is the admin's (which refuses every change)."""
        if request.method == "GET" and str(object_id).isdigit() and self.has_view_permission(request):
            return redirect("operator:pipeline_run", run_id=int(object_id))
        return super().change_view(request, object_id, form_url, extra_context)
