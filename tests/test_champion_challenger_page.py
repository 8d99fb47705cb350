"""Operations start a champion/challenger test on a tier's page and promote its challenger; compliance only
reads the page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from backoffice import roles
from core.models import AuditEvent
from loans.models import PolicyExperiment, PolicyVersion
from notifications.models import ReminderRule

from .factories import make_tier, make_user
from .factories_reminders import make_rule

pytestmark = pytest.mark.django_db


def test_operations_start_a_test_and_promote_its_challenger(client):
    tier = make_tier()
    make_rule(tier, -3)
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    url = reverse("operator:tier_test", args=[tier.pk])
    assert "-3,sms,pre_due,10:00" in client.get(url).content.decode()

    started = client.post(
        url,
        {
            "action": "start",
            "rules": "-1,sms,pre_due,09:00",
            "ladder": "",
            "challenger_share": "0.3",
            "holdout_share": "0.1",
            "reason": "the day before only",
        },
    )

    assert started.status_code == 302
    test = PolicyExperiment.objects.get(tier=tier)
    assert test.challenger.is_proposal and test.challenger.rules == [[-1, "sms", "pre_due", "09:00"]]
    page = client.get(url).content.decode()
    assert "-1,sms,pre_due,09:00" in page and "bo-promote" in page

    promoted = client.post(url, {"action": "promote", "reason": "it collected more"})

    assert promoted.status_code == 302
    assert list(
        ReminderRule.objects.filter(tier=tier, is_active=True).values_list("offset_days", flat=True)
    ) == [-1]
    latest = PolicyVersion.objects.get(pk=PolicyVersion.objects.latest_ids([tier.pk])[tier.pk])
    assert latest.created_by == "ops" and latest.reason == "it collected more"
    assert AuditEvent.objects.filter(action="strategy.challenger.promoted", actor="ops").count() == 1


def test_a_compliance_officer_reads_the_page_but_cannot_start_or_promote(client):
    tier = make_tier()
    client.force_login(make_user("auditor", group=roles.COMPLIANCE_OFFICER))
    url = reverse("operator:tier_test", args=[tier.pk])

    page = client.get(url)
    start = client.post(
        url, {"action": "start", "challenger_share": "0", "holdout_share": "0.1", "reason": "x"}
    )
    promote = client.post(url, {"action": "promote"})

    assert page.status_code == 200 and "bo-start-test" not in page.content.decode()
    assert start.status_code == 403 and promote.status_code == 403
    assert not PolicyExperiment.objects.exists()
