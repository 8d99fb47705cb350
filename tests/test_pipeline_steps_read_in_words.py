"""The dashboard and a pipeline run's page name each step and count in words, in the reader's language; the
codes (``suppressed:frequency_cap``) stay in ``run_jobs``'s output and the stored run, and as each label's
title."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.core.management import call_command
from django.utils import translation

from backoffice.models import PipelineRun
from backoffice.roles import OPERATIONS
from backoffice.step_labels import count_label, step_label
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_the_dashboard_names_steps_and_counts_in_words(client):
    PipelineRun.objects.create(
        trigger=PipelineRun.Trigger.SCHEDULE,
        status=PipelineRun.Status.SUCCEEDED,
        as_of=dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC),
        steps=[["dispatch", {"sent": 4, "suppressed": 1, "suppressed:frequency_cap": 1}]],
    )
    client.force_login(make_user("olga", group=OPERATIONS))

    page = client.get("/admin/").content.decode()

    assert '<th title="dispatch">Sending</th>' in page
    assert '<span title="sent">Sent: 4</span>' in page
    assert '<span title="suppressed:frequency_cap">Suppressed: Weekly contact cap reached: 1</span>' in page
    assert "sent=4" not in page


def test_the_run_page_reads_in_chinese(client):
    run = PipelineRun.objects.create(
        trigger=PipelineRun.Trigger.SCHEDULE,
        status=PipelineRun.Status.SUCCEEDED,
        steps=[["collections", {"cases_opened": 2, "steps_skipped": 5}], ["dispatch", {"deferred": 3}]],
    )
    client.force_login(make_user("olga", group=OPERATIONS))

    page = client.get(
        f"/admin/backoffice/pipeline/{run.pk}/", HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()

    shown = re.findall(
        r'<(?:th|span) title="(?:collections|dispatch|cases_opened|steps_skipped|deferred)"[^>]*>([^<]*)<',
        page,
    )
    assert len(shown) == 5
    assert not [text for text in shown if re.search(r"[A-Za-z]", text)], shown


def test_every_count_of_a_day_on_the_demo_book_has_a_label_in_both_languages(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", "--today", "2026-11-23", "--allow-production", stdout=io.StringIO())
    out = io.StringIO()
    call_command("run_jobs", "--now", "2026-11-23T01:30:00+00:00", stdout=out)

    said = re.findall(r"^  (\w+): (.*)$", out.getvalue(), re.M)
    steps = {name for name, _ in said}
    keys = {part.split("=")[0] for _, counts in said for part in counts.split(", ") if "=" in part}
    assert {"plan", "collections", "dispatch"} <= steps and len(keys) > 15
    for language in ("en", "zh-hans"):
        with translation.override(language):
            assert [s for s in steps if step_label(s) == s] == []
            assert [k for k in keys if count_label(k) == k] == []
