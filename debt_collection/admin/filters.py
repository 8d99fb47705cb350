"""List filters of the case list and the call queue: stage, DPD bucket, collector, open tasks, service level."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from loans.book_admin import request_moment
from loans.schedule import DPD_BUCKET_BOUNDS, DpdBucket

from ..assignment import collectors, service_level
from ..models import CallTask, EscalationStep, past_due_between_q


class StageFilter(admin.SimpleListFilter):
    """Stages as the ladders name them (a small table), not the distinct stages of every case ever opened."""

    title = _("stage")
    parameter_name = "stage"
    field = "stage"

    def lookups(self, request, model_admin):
        stages = EscalationStep.objects.order_by("stage").values_list("stage", flat=True).distinct()
        return [(stage, stage) for stage in stages]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class DpdBucketFilter(admin.SimpleListFilter):
    """Open cases by days past due (1-30, 31-60, 61-90, 90+, the bounds ``dpd_bucket`` uses) at the request's
    moment, in each customer's calendar: a condition on the date they count from (``past_due_between_q``)."""

    title = _("DPD bucket")
    parameter_name = "bucket"
    prefix = ""  # the path from the listed model to the case

    def lookups(self, request, model_admin):
        return [(bucket, DpdBucket(bucket).label) for bucket in DPD_BUCKET_BOUNDS]

    def queryset(self, request, queryset):
        bounds = DPD_BUCKET_BOUNDS.get(self.value())
        if bounds is None:
            return queryset
        first, last = bounds
        return queryset.filter(past_due_between_q(request_moment(request), first, last, self.prefix))


class CollectorFilter(admin.SimpleListFilter):
    """The collector a task is assigned to: the members of the Collector group, and "unassigned"."""

    title = _("collector")
    parameter_name = "collector"
    field = "assigned_to"
    UNASSIGNED = "none"

    def lookups(self, request, model_admin):
        people = [(str(u.pk), u.get_full_name() or u.get_username()) for u in collectors()]
        return [*people, (self.UNASSIGNED, _("Unassigned"))]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == self.UNASSIGNED:
            return queryset.filter(**{f"{self.field}__isnull": True})
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(**{f"{self.field}_id": int(value)})


class OpenOnlyFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", _("Open")), ("all", _("All"))]

    def queryset(self, request, queryset):
        if self.value() in (None, "open"):
            return queryset.filter(status=CallTask.Status.OPEN)
        return queryset

    def choices(self, changelist):
        value = self.value() or "open"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class ServiceLevelFilter(admin.SimpleListFilter):
    title = _("service level")
    parameter_name = "sla"

    def lookups(self, request, model_admin):
        return [("overdue", _("Not worked in time"))]

    def queryset(self, request, queryset):
        if self.value() == "overdue":
            return queryset.past_service_level(request.queue_now, service_level())
        return queryset


class TaskStageFilter(StageFilter):
    field = "case__stage"


class TaskDpdBucketFilter(DpdBucketFilter):
    prefix = "case__"
