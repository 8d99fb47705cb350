"""The outcomes page shows a tier's figures by version and arm with intervals, and exports them with a manifest;
operations and compliance read it, a collector does not."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.urls import reverse

from backoffice import roles
from core.exports.jobs import job_file_path
from core.models import ExportJob
from strategy.outcomes import run_outcomes

from .factories import make_tier, make_user
from .factories_collections import day, make_collector, make_overdue_loan, pay

pytestmark = pytest.mark.django_db


def a_book():
    tier = make_tier(code="OUT", name="Outcomes")
    loans = [make_overdue_loan(tier) for _ in range(4)]
    pay(loans[0], Decimal("500.00"), day(-1))
    run_outcomes(day(40))
    return tier


def test_operations_see_the_charts_with_intervals_and_the_cohort_table(client):
    tier = a_book()
    client.force_login(make_user("ops", group=roles.OPERATIONS))

    page = client.get(reverse("operator:strategy_outcomes"), {"tier": tier.pk}).content.decode()

    assert 'id="bo-chart-paid_by_due"' in page and "<svg" in page
    assert "25.0% (" in page and "1/4" in page  # one of four paid by the due date, with its interval
    assert "2026-12" in page


def test_compliance_exports_the_figures_as_csv_with_a_manifest(client):
    tier = a_book()
    client.force_login(make_user("auditor", group=roles.COMPLIANCE_OFFICER))

    response = client.post(reverse("operator:strategy_outcomes"), {"tier": tier.pk, "format": "csv"})

    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    header, *rows = body.strip().splitlines()
    assert header.split(",")[:5] == ["tier", "policy_version", "arm", "cohort", "metric"]
    paid = next(r for r in rows if ",paid_by_due," in r).split(",")
    assert paid[5:7] == ["1", "4"] and float(paid[8]) < 0.25 < float(paid[9])
    job = ExportJob.objects.get(kind="outcomes")
    manifest = json.loads(
        job_file_path(job).with_name(job_file_path(job).name + ".manifest.json").read_text()
    )
    assert manifest["rows"] == len(rows) and manifest["kind"] == "outcomes"
    assert manifest["filters"] == {"tier": "OUT"}


def test_a_collector_may_not_see_the_outcomes(client):
    a_book()
    client.force_login(make_collector("c1"))

    assert client.get(reverse("operator:strategy_outcomes")).status_code == 403


def test_export_log_writes_the_outcomes_with_a_manifest(tmp_path):
    from django.core.management import call_command

    a_book()
    out = tmp_path / "outcomes.csv"

    call_command("export_log", "outcomes", "--format", "csv", "--output", str(out))

    manifest = json.loads((tmp_path / "outcomes.csv.manifest.json").read_text())
    assert (
        manifest["kind"] == "outcomes" and manifest["rows"] == len(out.read_text().strip().splitlines()) - 1
    )
