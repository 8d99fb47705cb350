"""The audit-verification page: anyone who may view the audit trail checks it from the browser, as
``manage.py verify_audit`` does, and follows a large trail's check on its progress page."""

from __future__ import annotations

from django.contrib.admin import site
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from .audit_verification import start_verification
from .models import AuditVerification

VIEW_PERMISSION = "core.view_auditevent"


def audit_verification_view(request: HttpRequest, verification_id: int | None = None) -> HttpResponse:
    """GET: the latest verifications (or one of them, with its progress); POST: verify now."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    if request.method == "POST":
        verification = start_verification(request.user)
        return redirect("operator:audit_verification", verification_id=verification.pk)
    current = None
    if verification_id is not None:
        current = get_object_or_404(AuditVerification.objects.select_related("user"), pk=verification_id)
    context = {
        **site.each_context(request),
        "title": _("Verify the audit trail"),
        "current": current,
        "recent": AuditVerification.objects.select_related("user")[:10],
        "refresh": current is not None and not current.is_finished,
    }
    return TemplateResponse(request, "core/audit_verification.html", context)
