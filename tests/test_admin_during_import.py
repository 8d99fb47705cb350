"""The admin stays usable while a background import runs (issue 14, point 4).

On SQLite one connection writes at a time: an import that held the write lock while it read a 200,000-row file
(74 s) made a log-in fail with ``database is locked``. The import now reads and checks the file before its one
short write transaction opens, and the database runs in WAL mode with a busy timeout, so an operator logs in and
works while the import reads. The test pauses a background import in the middle of its file, in a thread of
its own, and logs in meanwhile (a log-in writes the user's last log-in time and a session).

SQLite's in-memory test database cannot show this (its connections share one cache and lock tables, not the
file), so on SQLite the test runs itself again in a subprocess on a file database (``SQLITE_TEST_NAME``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from backoffice import roles
from core.imports.jobs import run_import_job, start_import_job
from core.models import ImportJob
from loans.models import Customer
from loans.resources import CustomerResource
from tests.factories import make_user

HEADER = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason"
)
ROWS = 400
PAUSE_AT = 200
PASSWORD = "pw-for-tests-1!"


def _on_a_file_database() -> bool:
    return connection.vendor != "sqlite" or not connection.is_in_memory_db()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_immediate_transactions():
    options = django_settings.DATABASES["default"].get("OPTIONS", {})
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's settings")
    assert options["timeout"] >= 20
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]


def test_on_sqlite_the_scenarios_run_on_a_file_database(tmp_path):
    """The scenarios below, in a subprocess whose SQLite test database is a file (one migration for both)."""
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        pytest.skip("the scenarios run in this process")
    environment = {**os.environ, "SQLITE_TEST_NAME": str(tmp_path / "test.sqlite3")}
    environment.pop("DATABASE_URL", None)
    module = Path(__file__).resolve().relative_to(django_settings.BASE_DIR)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(module),
            "-k",
            "background_import",
        ],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout, run.stdout[-2000:]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry run"])
def test_an_operator_logs_in_while_a_background_import_reads_its_file(settings, tmp_path, dry_run):
    if not _on_a_file_database():
        pytest.skip("SQLite's in-memory database: run on a file database by the test above")
    settings.IMPORT_ROOT = tmp_path / "imports"
    importer = make_user("importer", group=roles.OPERATIONS)
    make_user("operator", group=roles.OPERATIONS, password=PASSWORD)
    lines = [HEADER] + [f"WL{n:04d},Customer {n},138{n:08d},,,en,Asia/Shanghai,,,,,,," for n in range(ROWS)]
    job = start_import_job(
        importer,
        CustomerResource,
        ("\n".join(lines) + "\n").encode(),
        file_name="customers.csv",
        format_name="CSV",
        dry_run=dry_run,
    )

    paused, resume = threading.Event(), threading.Event()
    original = CustomerResource.before_save_instance

    def pause_in_the_middle(self, instance, row, **kwargs):
        if kwargs.get("row_number") == PAUSE_AT:
            paused.set()
            resume.wait(60)
        return original(self, instance, row, **kwargs)

    outcome: dict = {}

    def background_import():
        try:
            outcome.update(run_import_job(job.pk))
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcome["exception"] = exc
        finally:
            connections.close_all()

    CustomerResource.before_save_instance = pause_in_the_middle
    worker = threading.Thread(target=background_import)
    try:
        worker.start()
        assert paused.wait(60), outcome
        if connection.vendor == "sqlite":
            connection.ensure_connection()
            # Waiting for the lock as long as production does (30 s) would only slow a failing test down.
            connection.connection.execute("PRAGMA busy_timeout = 3000")
        client = Client()
        response = client.post(
            reverse("admin:login"),
            {"username": "operator", "password": PASSWORD, "next": reverse("admin:index")},
        )
        assert response.status_code == 302, response.content[:500]
        assert client.get(reverse("admin:loans_customer_changelist")).status_code == 200
        assert client.get(reverse("imports:job", args=[job.pk])).status_code == 200
    finally:
        resume.set()
        worker.join(120)
        CustomerResource.before_save_instance = original

    assert "exception" not in outcome, outcome
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert Customer.objects.count() == (0 if dry_run else ROWS)
