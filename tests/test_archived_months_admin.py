"""The months moved out of the partitioned logs are listed in the admin (which file, digests, the seq range the
chain runs through): a compliance officer reads them and changes nothing, as for the audit trail itself."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from core.models import MonthArchive
from tests.factories import make_user
from tests.factories_audit import make_compliance_officer


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def june(db):
    return MonthArchive.objects.create(
        kind=MonthArchive.Kind.AUDIT,
        month=dt.date(2025, 6, 1),
        file_path="archives/audit-2025-06.jsonl",
        file_sha256="a" * 64,
        manifest_sha256="b" * 64,
        rows=1234,
        first_seq=11,
        last_seq=1244,
        first_hash="c" * 64,
        last_hash="d" * 64,
        archived_at=dt.datetime(2025, 9, 10, 8, 0, tzinfo=dt.UTC),
        archived_by="ops.lee",
    )


def test_it_lists_archived_months_for_a_compliance_officer(client, june):
    client.force_login(make_compliance_officer())
    html = client.get(reverse("admin:core_montharchive_changelist")).content.decode()
    assert "2025-06" in html and "1244" in html and "ops.lee" in html
    page = client.get(reverse("admin:core_montharchive_change", args=[june.pk]))
    assert page.status_code == 200 and "archives/audit-2025-06.jsonl" in page.content.decode()


def test_nobody_edits_or_deletes_an_archived_month(client, june):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    assert client.get(reverse("admin:core_montharchive_add")).status_code == 403
    assert (
        client.post(reverse("admin:core_montharchive_delete", args=[june.pk]), {"post": "yes"}).status_code
        == 403
    )
    page = client.get(reverse("admin:core_montharchive_change", args=[june.pk])).content.decode()
    assert 'name="_save"' not in page
    client.post(reverse("admin:core_montharchive_change", args=[june.pk]), {"rows": "1"})
    june.refresh_from_db()
    assert june.rows == 1234
