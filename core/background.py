"""Background jobs (imports, exports) as rows: one way to claim a job for a run of its django-q2 task."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q


def stale_before(now: dt.datetime) -> dt.datetime:
    """A job still ``running`` since before this moment has outlived an attempt (the cluster's ``timeout``):
    its worker was killed, and the broker's retry may claim it again."""
    return now - dt.timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 900)))


def claim_job(model: type[models.Model], job_id: int, now: dt.datetime) -> bool:
    """Mark the job ``running`` from ``now`` for this run, if it is queued or left running by a killed worker;
    False when there is nothing to claim (finished, or running in another worker).

    One conditional UPDATE, so two runs of the same task never both claim the job: the task is safe to run
    twice. ``model`` has ``Status.QUEUED``/``RUNNING``, ``status``, ``started_at``, ``rows_done`` and
    ``finished_at``."""
    claimable = Q(status=model.Status.QUEUED) | Q(
        status=model.Status.RUNNING, started_at__lt=stale_before(now)
    )
    claimed = model.objects.filter(claimable, pk=job_id).update(
        status=model.Status.RUNNING, started_at=now, rows_done=0, finished_at=None
    )
    return bool(claimed)
