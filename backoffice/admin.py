"""The back office's admin site: its name, and the audited admins of Django's users and groups, django-q2's
tasks and schedules and django-axes' lockouts."""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from core.admin import AuditedAdminMixin, LargeTablePaginator
from core.audit import log_event

# The product's name on every admin page, in the operator's language; "View site" would lead nowhere (the back
# office has no public site), so it is not offered and "/" leads to the dashboard.
admin.site.site_header = _("Repayments & Collections")
admin.site.site_title = _("Repayments & Collections")
admin.site.index_title = _("Today's board")
admin.site.site_url = None


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

from . import pipeline_admin  # noqa: E402, F401  (pipeline runs)
