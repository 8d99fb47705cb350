"""Who works call tasks, and by when: the members of the Collector group (nobody else), within the service level.

The daily ladder hands new tasks to the least-loaded of them, a follow-up call goes to the collector who took
the promise, and a team lead may hand open tasks to another of them; all three ask ``collectors()``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from core.audit import Event, about, actor_name, log_events

from .models import CallTask

# The group whose members receive call tasks; the project's roles (backoffice.roles) give it its permissions.
COLLECTOR = "Collector"


def collectors() -> QuerySet:
    """Active users of the Collector group, by user name: the only people a call task may be assigned to."""
    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name=COLLECTOR)
        .distinct()
        .order_by("username")
    )


def service_level() -> dt.timedelta:
    """How long after falling due a call task is to be worked (``CALL_TASK_SERVICE_LEVEL_HOURS``)."""
    return dt.timedelta(hours=settings.CALL_TASK_SERVICE_LEVEL_HOURS)


def is_collector(user: Any) -> bool:
    return user is not None and collectors().filter(pk=user.pk).exists()


def reassign_call_tasks(tasks: Iterable[CallTask], collector: Any, *, actor: Any, at: dt.datetime) -> int:
    """Hand the open tasks among ``tasks`` to ``collector`` (a member of the Collector group), in one
    transaction; each task moved writes ``collections.call.reassigned`` with the collector before and after.
    Tasks already theirs, done or cancelled are left as they are. Returns how many moved.

    Raises ``ValidationError`` when ``collector`` is not an active member of the Collector group (nothing is
    changed)."""
    if not is_collector(collector):
        raise ValidationError({"collector": "Call tasks go only to active members of the Collector group."})
    ids = [t.pk for t in tasks]
    actor_str = actor_name(actor)
    with transaction.atomic():
        moving = list(
            CallTask.objects.select_for_update()
            .filter(pk__any_of=ids, status=CallTask.Status.OPEN)
            .exclude(assigned_to=collector)
            .order_by("pk")
        )
        if not moving:
            return 0
        CallTask.objects.filter(pk__in=[t.pk for t in moving]).update(assigned_to=collector)
        log_events(
            Event(
                action="collections.call.reassigned",
                actor=actor_str,
                **about(CallTask, task.pk),
                at=at,
                before={"assigned_to_id": task.assigned_to_id},
                after={"assigned_to_id": collector.pk, "case_id": task.case_id},
            )
            for task in moving
        )
    return len(moving)
