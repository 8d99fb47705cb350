"""Thin django-q2 entry points: they take no objects and are safe to run twice (claims, unique keys)."""

from __future__ import annotations

from django.utils import timezone


def run_daily_pipeline() -> dict:
    """The whole pipeline of ``run_jobs`` as of now."""
    from .jobs import run_pipeline

    return run_pipeline(timezone.now())


def dispatch_due() -> dict:
    """Send what is due by now (the pipeline's last step, on its own every minute)."""
    from notifications.services import dispatch_due as dispatch

    return dispatch(timezone.now())
