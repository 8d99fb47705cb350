import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError

from backoffice.models import AuditEvent
from backoffice.policy_preview import StepSpec, parse_ladder, parse_rules, preview_policy
from debt_collection.models import EscalationStep
from notifications.models import NotificationLog, OutboxMessage, ReminderRule, ReminderTemplate
from tests.factories import make_customer, make_installment, make_loan, make_tier, make_user
from tests.factories_operator import local

START, END = dt.date(2026, 7, 1), dt.date(2026, 7, 10)
DUE = dt.date(2026, 7, 5)
FREQUENCY_CAP = ("suppressed", "frequency_cap")
DO_NOT_CONTACT = ("suppressed", "do_not_contact")


@pytest.fixture
def tier(db):
    tier = make_tier(
        code="MID",
        name="Medium",
        grace_period_days=3,
        max_contacts_per_week=1,
        channel_order="sms,push,email",
    )
    for offset in (-3, -1):
        ReminderRule.objects.create(
            tier=tier, offset_days=offset, channel="sms", kind="pre_due", send_time=dt.time(10)
        )
    for channel in ("sms", "push"):
        ReminderTemplate.objects.create(
            kind="pre_due", channel=channel, language="zh-hans", body="{customer_name} {loans}"
        )
    EscalationStep.objects.create(tier=tier, min_dpd=5, stage="early", action="sms", kind="overdue")
    EscalationStep.objects.create(tier=tier, min_dpd=15, stage="call", action="call_task")

    alice = make_customer(tier=tier)  # two loans due the same day: one contact for both
    make_installment(make_loan(alice, ref="A-1"), due_date=DUE)
    make_installment(make_loan(alice, ref="A-2"), due_date=DUE)
    bob = make_customer(tier=tier, do_not_contact=True, do_not_contact_reason="dispute")
    make_installment(make_loan(bob), due_date=DUE)
    carol = make_customer(tier=tier, opt_out_sms=True)  # falls back to push
    make_installment(make_loan(carol), due_date=DUE)
    dave = make_customer(tier=tier)  # pays on 3 July: the day-before reminder is never planned
    make_installment(make_loan(dave), due_date=DUE, paid_at=local(dt.date(2026, 7, 3)), amount_paid=500)
    erin = make_customer(tier=tier)  # overdue since 20 June: DPD 15 on 5 July
    make_installment(make_loan(erin, ref="E-1"), due_date=dt.date(2026, 6, 20))
    return tier


def test_it_compares_the_current_policy_with_a_higher_cap_and_a_later_ladder(tier):
    result = preview_policy(
        tier, START, END, max_contacts_per_week=2, ladder=(StepSpec(30, "call_task", "call"),)
    )
    current, proposed = result["current"], result["proposed"]

    assert result["sample"]["customers"] == 5
    assert current.planned == proposed.planned == 7  # alice 2, bob 2, carol 2, dave 1
    assert current.sent == 3 and dict(current.sent_by_channel) == {"sms": 2, "push": 1}
    assert current.held_back[FREQUENCY_CAP] == 2  # alice's and carol's day-before reminders
    assert current.held_back[DO_NOT_CONTACT] == 2
    # erin reaches DPD 15 (her DPD 5 SMS ran before the range); the four loans due 5 July reach DPD 5 on 10 July
    assert dict(current.escalations) == {"call_task": 1, "sms": 4}

    assert proposed.sent == 5 and proposed.held_back[FREQUENCY_CAP] == 0
    assert proposed.held_back[DO_NOT_CONTACT] == 2
    assert dict(proposed.escalations) == {}


def test_a_send_time_outside_the_window_is_deferred_to_the_next_opening(tier):
    rules = parse_rules("-3,sms,pre_due,22:30")

    result = preview_policy(tier, START, END, rules=rules, max_contacts_per_week=5)

    # Planned at the window's opening, as the planner does (planning and dispatch check the same window).
    assert result["proposed"].deferrals == 0
    assert result["proposed"].sent == 3  # alice, carol and dave (bob is never contacted)
    assert result["proposed"].per_day[dt.date(2026, 7, 3)]["sent"] == 3  # sent at 08:00 the next morning


def test_the_preview_writes_nothing_and_reads_in_a_few_queries(tier, django_assert_max_num_queries):
    before = (NotificationLog.objects.count(), AuditEvent.objects.count(), OutboxMessage.objects.count())

    with django_assert_max_num_queries(8):  # 8: with the jurisdictions' rules
        preview_policy(tier, START, END, max_contacts_per_week=3)

    assert (
        NotificationLog.objects.count(),
        AuditEvent.objects.count(),
        OutboxMessage.objects.count(),
    ) == before


def test_it_refuses_a_bad_proposal_naming_the_line():
    with pytest.raises(ValidationError, match="line 2"):
        parse_rules("-3,sms,pre_due,10:00\n-1,fax,pre_due,10:00")
    with pytest.raises(ValidationError, match="line 1"):
        parse_ladder("0,call_task")


def test_the_tier_page_shows_both_policies_side_by_side(client, tier):
    user = make_user("planner")
    user.user_permissions.add(Permission.objects.get(codename="view_credittier"))
    client.force_login(user)
    url = f"/admin/loans/credittier/{tier.pk}/preview/"

    params = {
        "run": "1",
        "start": "2026-07-01",
        "end": "2026-07-10",
        "sample_size": "50",
        "grace_period_days": "3",
        "max_contacts_per_week": "2",
        "channel_order": "sms,push,email",
        "rules": "-3,sms,pre_due,10:00\n-1,sms,pre_due,10:00",
        "ladder": "5,sms,early\n15,call_task,call",
    }
    html = client.get(url, params).content.decode()

    assert 'id="bo-preview-result"' in html
    row = html.split('data-code="frequency_cap"')[1].split("</tr>")[0]
    assert '<td class="num">2</td><td class="num">0</td>' in row  # current 2, proposed 0
    assert client.get(url).status_code == 200  # the form, prefilled with the saved policy
    client.force_login(make_user("outsider"))
    assert client.get(url).status_code == 403


def test_the_tier_change_page_links_to_the_preview(client, tier, monkeypatch):
    from django.contrib import admin

    from loans.models import CreditTier

    # The tier admin names this template in change_form_template (see the README's operator screens).
    monkeypatch.setattr(
        admin.site._registry[CreditTier], "change_form_template", "admin/loans/credittier/change_form.html"
    )
    client.force_login(make_user("boss", is_superuser=True))

    html = client.get(f"/admin/loans/credittier/{tier.pk}/change/").content.decode()

    assert f'href="/admin/loans/credittier/{tier.pk}/preview/" class="bo-preview-link"' in html
