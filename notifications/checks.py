"""Deployment checks of the reminders: ``manage.py check --deploy`` warns about what would break a message."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

PUBLIC_BASE_URL_MISSING = "notifications.W001"


@register(Tags.security, deploy=True)
def check_public_base_url(app_configs, **kwargs):
    """Every email carries an unsubscribe link and every provider calls back to ``PUBLIC_BASE_URL``: without it
    the links have no host (a customer could not opt out) and no delivery receipt comes back."""
    if (getattr(settings, "PUBLIC_BASE_URL", "") or "").strip():
        return []
    return [
        Warning(
            "PUBLIC_BASE_URL is empty: the unsubscribe link of every email would have no host, and providers "
            "would have no address to report deliveries to.",
            hint="Set PUBLIC_BASE_URL to the product's public address, e.g. https://backoffice.example.",
            id=PUBLIC_BASE_URL_MISSING,
        )
    ]
