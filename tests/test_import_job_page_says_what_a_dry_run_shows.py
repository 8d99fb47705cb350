"""A large file's dry run is checked in the background a chunk at a time, in bounded memory: its page shows the
totals and the errors by line, not each row's changes, and says so (issue 18, point 2)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.models import ImportJob
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def job(user, *, dry_run: bool) -> ImportJob:
    return ImportJob.objects.create(
        user=user,
        resource="loans.resources.PaymentResource",
        file_name="payments.csv",
        file_path="2026/11/x.csv",
        file_sha256="0" * 64,
        format="CSV",
        is_dry_run=dry_run,
        status=ImportJob.Status.SUCCEEDED,
        rows_total=600000,
        rows_done=600000,
        rows_new=600000,
    )


def test_it_says_a_background_dry_run_shows_totals_and_errors_not_each_rows_changes(client, settings):
    settings.IMPORT_BACKGROUND_THRESHOLD = 5000
    user = make_user("ops", is_superuser=True)
    client.force_login(user)

    html = client.get(reverse("imports:job", args=[job(user, dry_run=True).pk])).content.decode()

    assert "A file of more than 5000 rows is checked in the background" in html
    assert "not each row" in html and "s changes" in html


def test_a_real_imports_page_does_not(client):
    user = make_user("ops", is_superuser=True)
    client.force_login(user)

    html = client.get(reverse("imports:job", args=[job(user, dry_run=False).pk])).content.decode()

    assert "bo-import-preview-note" not in html
