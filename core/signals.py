"""Signal receivers of the core: admin log-ins, failed log-ins and lockouts go to the audit trail."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from .audit import ensure_chain_head, log_event


def client_ip(request) -> str:
    """The client address as the server saw it. X-Forwarded-For is not trusted: any client can send it."""
    if request is None:
        return ""
    return request.META.get("REMOTE_ADDR", "") or ""


@receiver(user_logged_in, dispatch_uid="core.audit_login_succeeded")
def record_login(sender, request, user, **kwargs):
    log_event(
        "backoffice.login.succeeded",
        actor=user,
        obj=user,
        after={"username": user.get_username(), "ip": client_ip(request)},
    )


@receiver(user_login_failed, dispatch_uid="core.audit_login_failed")
def record_failed_login(sender, credentials, request=None, **kwargs):
    # Django already replaces the password by asterisks in ``credentials``; only the user name is kept here.
    username = str(credentials.get("username", "") or "")[:150]
    after = {"username": username, "ip": client_ip(request)}
    if getattr(request, "axes_locked_out", False):
        after["locked_out"] = True  # refused before the password was checked
    log_event(
        "backoffice.login.failed",
        actor=f"anonymous:{username}" if username else "anonymous",
        after=after,
    )


@receiver(user_locked_out, dispatch_uid="core.audit_login_locked_out")
def record_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    """django-axes locked this user name out from this address (and says so again at each attempt meanwhile)."""
    username = str(username or "")[:150]
    log_event(
        "backoffice.login.locked_out",
        actor=f"anonymous:{username}" if username else "anonymous",
        after={
            "username": username,
            "ip": ip_address or client_ip(request),
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cooloff_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        },
    )


@receiver(post_migrate, dispatch_uid="core.ensure_chain_head")
def create_chain_head(sender, app_config=None, using="default", **kwargs):
    """The chain head row must exist before the first writer locks it (also after a flush)."""
    if app_config is None or app_config.label != "core":
        return
    ensure_chain_head(using=using)
