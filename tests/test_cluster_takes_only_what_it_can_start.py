"""A cluster takes tasks off the Redis broker only as its workers come to start them: the daily run's chunks left
in the broker go to whichever cluster is free first, and a cluster killed loses no more than it was about to run.
A real `qcluster` process on the Redis broker."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.test_scaleout import ROOT, cluster_env, kill_group, start_cluster, wait_for

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASKS = 8

ENQUEUE = f"""
from django_q.tasks import async_task
for i in range({TASKS}):
    async_task("time.sleep", 20, task_name=f"long-{{i}}")
"""


def test_a_cluster_leaves_in_the_broker_the_tasks_its_workers_cannot_start_yet(redis_url, tmp_path):
    import redis

    env = cluster_env(redis_url, tmp_path, "A")
    env.update(Q_CLUSTER_NAME="takes-what-it-starts", Q_WORKERS="1")
    queued = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", ENQUEUE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert queued.returncode == 0, queued.stderr
    broker = redis.Redis.from_url(redis_url)
    key = "django_q:takes-what-it-starts:q"
    assert broker.llen(key) == TASKS

    cluster = start_cluster(env, tmp_path / "cluster.log")
    try:
        wait_for(lambda: broker.llen(key) < TASKS, 90, "the cluster to take its first task")
        time.sleep(3)  # what a cluster takes ahead of its workers it takes at once; the first task runs 20 s

        # One worker: the task it runs, the one waiting for it, the one the pusher holds; the rest stay in the
        # broker for any other cluster (the old setting, 50 a cluster, took all eight at once).
        assert broker.llen(key) >= TASKS - 3
    finally:
        kill_group(cluster)
