"""The operator screens that live under /admin/ beside the model admins (included before admin.site.urls)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from core import audit_views
from strategy.champion_views import tier_test_view
from strategy.outcome_views import outcomes_view
from strategy.views import tier_preview_view

from . import customer_page, pipeline_views

app_name = "operator"

urlpatterns = [
    path(
        "loans/customer/<int:customer_id>/timeline/",
        admin.site.admin_view(customer_page.customer_page_view),
        name="customer_timeline",
    ),
    path(
        "loans/loan/<int:loan_id>/timeline/",
        admin.site.admin_view(customer_page.loan_page_view),
        name="loan_timeline",
    ),
    path(
        "loans/credittier/<int:tier_id>/preview/",
        admin.site.admin_view(tier_preview_view),
        name="tier_preview",
    ),
    path(
        "loans/credittier/<int:tier_id>/champion-challenger/",
        admin.site.admin_view(tier_test_view),
        name="tier_test",
    ),
    path("strategy/outcomes/", admin.site.admin_view(outcomes_view), name="strategy_outcomes"),
    path(
        "backoffice/pipeline/start/",
        admin.site.admin_view(pipeline_views.start_pipeline_view),
        name="start_pipeline",
    ),
    path(
        "backoffice/pipeline/<int:run_id>/",
        admin.site.admin_view(pipeline_views.pipeline_run_view),
        name="pipeline_run",
    ),
    path(
        "core/auditevent/verify/",
        admin.site.admin_view(audit_views.audit_verification_view),
        name="audit_verify",
    ),
    path(
        "core/auditevent/verify/<int:verification_id>/",
        admin.site.admin_view(audit_views.audit_verification_view),
        name="audit_verification",
    ),
]
