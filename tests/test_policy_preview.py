"""The policy preview runs the real engine: its figures are what the daily runs do on the same book."""

import datetime as dt
import io
import json
import zoneinfo
from collections import Counter

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Min
from django.test.utils import CaptureQueriesContext

from backoffice.models import PipelineRun
from core.models import AuditChainHead, AuditEvent
from debt_collection.models import CallTask, CaseStepRun, CollectionCase, EscalationStep
from loans.models import CreditTier, Customer
from notifications.models import (
    NotificationItem,
    NotificationLog,
    OutboxMessage,
    ReminderRule,
    ReminderTemplate,
)
from strategy.policy import parse_ladder, parse_rules
from strategy.preview import preview_policy
from tests.factories import make_customer, make_installment, make_loan, make_tier, make_user

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
START, END = dt.date(2026, 7, 1), dt.date(2026, 7, 10)
DUE = dt.date(2026, 7, 5)
ERIN_DUE = dt.date(2026, 6, 26)  # DPD 8 on 4 July: past a grace of 7, not of 14 before the range ends


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=SHANGHAI)


@pytest.fixture
def tier(db):
    """Ladder 1/8/8 with grace 7, two channels for the same contact, a customer opted out of SMS without email."""
    tier = make_tier(
        code="MID",
        name="Medium",
        grace_period_days=7,
        max_contacts_per_week=2,
        channel_order="sms,push,email",
    )
    for offset, channel in ((-3, "sms"), (-3, "push"), (-1, "sms")):
        ReminderRule.objects.create(
            tier=tier, offset_days=offset, channel=channel, kind="pre_due", send_time=dt.time(10)
        )
    for kind, channel in (("pre_due", "sms"), ("pre_due", "push"), ("pre_due", "email"), ("overdue", "sms")):
        ReminderTemplate.objects.create(
            kind=kind, channel=channel, language="zh-hans", body="{customer_name} {loans}"
        )
    EscalationStep.objects.create(tier=tier, min_dpd=1, stage="early", action="sms", kind="overdue")
    EscalationStep.objects.create(tier=tier, min_dpd=8, stage="firm", action="sms", kind="overdue")
    EscalationStep.objects.create(tier=tier, min_dpd=8, stage="call", action="call_task")

    alice = make_customer(tier=tier, ref="ALICE")  # two loans due the same day: one message for both
    make_installment(make_loan(alice, ref="A-1"), due_date=DUE)
    make_installment(make_loan(alice, ref="A-2"), due_date=DUE)
    bob = make_customer(tier=tier, ref="BOB", do_not_contact=True, do_not_contact_reason="dispute")
    make_installment(make_loan(bob, ref="B-1"), due_date=DUE)
    # Opted out of SMS, no email: the SMS contact's fallback is push, which that contact already used.
    carol = make_customer(tier=tier, ref="CAROL", opt_out_sms=True, email="")
    make_installment(make_loan(carol, ref="C-1"), due_date=DUE)
    erin = make_customer(tier=tier, ref="ERIN")
    make_installment(make_loan(erin, ref="E-1"), due_date=ERIN_DUE)
    return tier


def run_daily_runs(start: dt.date, end: dt.date) -> None:
    """``run_jobs`` as the schedules run it: at each local midnight, then at each moment a contact comes due."""
    for offset in range((end - start).days + 1):
        day = start + dt.timedelta(days=offset)
        at, day_end = midnight(day), midnight(day + dt.timedelta(days=1))
        while at is not None:
            call_command("run_jobs", now=at.isoformat(), force=True, stdout=io.StringIO())
            at = (
                NotificationLog.objects.pending()
                .filter(scheduled_for__gt=at, scheduled_for__lt=day_end)
                .aggregate(at=Min("scheduled_for"))["at"]
            )


def recorded_figures(start: dt.date, end: dt.date) -> dict:
    """SPEC's figures counted straight from what the runs left in the database."""
    contacts = {"sent": 0, "deferred": 0, "suppressed": Counter(), "cancelled": Counter()}
    for log in NotificationLog.objects.all():
        if log.status == "sent":
            contacts["sent"] += start <= log.sent_at.astimezone(SHANGHAI).date() <= end
        elif log.status == "deferred":
            contacts["deferred"] += 1
        elif log.status in ("suppressed", "cancelled"):
            if start <= log.scheduled_for.astimezone(SHANGHAI).date() <= end:
                contacts[log.status][log.reason] += 1
    escalations = Counter(
        CaseStepRun.objects.filter(result=CaseStepRun.Result.PERFORMED).values_list("action", flat=True)
    )
    return {
        "contacts": {
            **contacts,
            "suppressed": dict(contacts["suppressed"]),
            "cancelled": dict(contacts["cancelled"]),
        },
        "escalations": dict(escalations),
    }


def real_figures_with(change=None) -> dict:
    """What the daily runs record over the range (after ``change`` is saved), then undone."""
    with transaction.atomic():
        if change is not None:
            change()
        run_daily_runs(START, END)
        figures = recorded_figures(START, END)
        transaction.set_rollback(True)
    return figures


def test_the_preview_counts_what_the_daily_runs_do(tier):
    result = preview_policy(tier, START, END)

    expected = {
        "contacts": {
            # 2 July: alice's SMS and push, carol's push, erin's ladder SMS (deferred to 08:00, then sent);
            # 4 July: carol's day-before reminder through push (not used yet by that contact)
            "sent": 5,
            "deferred": 0,
            "suppressed": {"do_not_contact": 3, "frequency_cap": 1, "opted_out": 1},
            "cancelled": {},
        },
        # DPD 8 reached at once on 4 July: both steps of DPD 8 performed, the DPD 1 step skipped
        "escalations": {"call_task": 1, "sms": 1},
    }
    assert result["current"].as_spec() == expected
    assert real_figures_with() == expected
    assert result["sample"] == {"customers": 4, "loans": 5}
    assert result["changed_loans"] == [] and not result["is_changed"]


def test_a_longer_grace_period_is_what_the_daily_runs_do_with_it(tier):
    result = preview_policy(tier, START, END, grace_period_days=14)

    def raise_grace():
        CreditTier.objects.filter(pk=tier.pk).update(grace_period_days=14)

    assert result["proposed"].as_spec() == real_figures_with(raise_grace)
    assert result["proposed"].escalations == Counter()  # DPD 15 comes after the range
    assert [row["loan_ref"] for row in result["changed_loans"]] == ["E-1"]
    assert result["changed_loans"][0]["current"] == {
        "escalation:call_task": 1,
        "escalation:sms": 1,
        "sent": 1,
    }
    assert result["changed_loans"][0]["proposed"] == {}


def test_a_proposed_cap_rules_and_ladder_are_what_the_daily_runs_do_with_them(tier):
    rules = parse_rules("-3,sms,pre_due,10:00\n-1,sms,pre_due,22:30")
    ladder = parse_ladder("3,sms,early\n10,call_task,call")
    result = preview_policy(tier, START, END, max_contacts_per_week=5, rules=rules, ladder=ladder)

    def save_the_proposal():
        CreditTier.objects.filter(pk=tier.pk).update(max_contacts_per_week=5)
        ReminderRule.objects.filter(tier=tier, channel="push").update(is_active=False)
        ReminderRule.objects.filter(tier=tier, offset_days=-1).update(send_time=dt.time(22, 30))
        EscalationStep.objects.filter(tier=tier).exclude(min_dpd=1).delete()
        EscalationStep.objects.filter(tier=tier, min_dpd=1).update(min_dpd=3)
        EscalationStep.objects.create(tier=tier, min_dpd=10, stage="call", action="call_task")

    assert result["proposed"].as_spec() == real_figures_with(save_the_proposal)
    # DPD 8 on 4 July (the DPD 3 step), DPD 10 on 6 July: as many steps as now for erin, on other days
    assert result["proposed"].escalations == Counter({"sms": 1, "call_task": 1})
    # No push rule: alice's push, carol's push (and opt-out), bob's third suppression are gone
    assert {row["loan_ref"] for row in result["changed_loans"]} == {"A-1", "A-2", "B-1", "C-1"}


def test_the_preview_writes_nothing_and_sends_nothing(tier, settings):
    settings.NOTIFICATION_BACKENDS = dict.fromkeys(
        ("sms", "email", "push"), "tests.test_policy_preview.Refuse"
    )
    tables = (
        NotificationLog,
        NotificationItem,
        AuditEvent,
        OutboxMessage,
        CollectionCase,
        CaseStepRun,
        CallTask,
    )
    tables += (PipelineRun, ReminderRule, EscalationStep)
    before = [model.objects.count() for model in tables]
    head = AuditChainHead.objects.values_list("seq", "hash").get(id=1)
    policy = list(
        CreditTier.objects.values_list("grace_period_days", "max_contacts_per_week", "channel_order")
    )

    result = preview_policy(tier, START, END, grace_period_days=10, ladder=parse_ladder("2,email,early"))

    assert result["current"].sent == 5 and result["current"].messages_delivered == 5  # into memory only
    assert [model.objects.count() for model in tables] == before
    assert AuditChainHead.objects.values_list("seq", "hash").get(id=1) == head
    assert (
        list(CreditTier.objects.values_list("grace_period_days", "max_contacts_per_week", "channel_order"))
        == policy
    )
    assert not NotificationLog.objects.exists()


class Refuse:
    """A delivery backend the preview must never reach."""

    def send(self, message):
        raise AssertionError(f"the preview sent a message: {message}")


def test_its_queries_do_not_grow_with_the_sample(tier):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            preview_policy(tier, START, END)
        return len(captured.captured_queries)

    queries()  # once for what is read once per process (the database's JSON support)
    few = queries()
    for customer in list(Customer.objects.all()):  # the same book twice over: as many customers again
        loans = list(customer.loans.all())
        customer.pk, customer.ref = None, f"{customer.ref}-2"
        customer.save()
        for loan in loans:
            installments = list(loan.installments.all())
            loan.pk, loan.ref, loan.customer = None, f"{loan.ref}-2", customer
            loan.save()
            for installment in installments:
                installment.pk, installment.loan = None, loan
                installment.save()

    assert queries() == few


def test_it_refuses_a_bad_proposal_naming_the_line(tier):
    with pytest.raises(ValidationError, match="line 2"):
        parse_rules("-3,sms,pre_due,10:00\n-1,fax,pre_due,10:00")
    with pytest.raises(ValidationError, match="line 1"):
        parse_ladder("0,call_task")
    with pytest.raises(ValidationError, match="at most 62 days"):
        preview_policy(tier, START, START + dt.timedelta(days=62))


def test_the_command_prints_specs_figures_and_the_loans_that_change(tier):
    out = io.StringIO()
    call_command(
        "preview_policy", "MID", "--from", "2026-07-01", "--to", "2026-07-10", "--sample", "10",
        "--format", "json", "--grace-period-days", "14", stdout=out,
    )  # fmt: skip

    figures = json.loads(out.getvalue())
    assert set(figures) == {"contacts", "escalations", "proposed", "changed_loans"}
    assert figures["escalations"] == {"call_task": 1, "sms": 1}
    assert figures["contacts"]["suppressed"] == {"do_not_contact": 3, "frequency_cap": 1, "opted_out": 1}
    assert figures["proposed"]["escalations"] == {}
    assert [loan["loan_ref"] for loan in figures["changed_loans"]] == ["E-1"]

    text = io.StringIO()
    call_command(
        "preview_policy", "MID", "--from", "2026-07-01", "--to", "2026-07-10", "--sample", "10",
        "--grace-period-days", "14", stdout=text,
    )  # fmt: skip
    lines = text.getvalue().splitlines()
    assert "suppressed do_not_contact=3, suppressed frequency_cap=1, suppressed opted_out=1" in lines[1]
    assert lines[1].startswith("  current: sent=") and "escalations: call_task=1, sms=1" in lines[1]
    assert lines[2].startswith("  proposed: sent=") and lines[2].endswith("escalations: none")
    assert lines[3].startswith("  changed E-1:")


def test_the_tier_page_shows_both_policies_and_the_loans_that_change(client, tier):
    user = make_user("planner")
    user.user_permissions.add(Permission.objects.get(codename="view_credittier"))
    client.force_login(user)
    url = f"/admin/loans/credittier/{tier.pk}/preview/"

    params = {
        "run": "1",
        "start": "2026-07-01",
        "end": "2026-07-10",
        "sample_size": "50",
        "grace_period_days": "7",
        "max_contacts_per_week": "3",
        "channel_order": "sms,push,email",
        "rules": "-3,sms,pre_due,10:00\n-3,push,pre_due,10:00\n-1,sms,pre_due,10:00",
        "ladder": "1,sms,early\n8,sms,firm\n8,call_task,call",
    }
    html = client.get(url, params).content.decode()

    assert 'id="bo-preview-result"' in html
    row = html.split('data-code="frequency_cap"')[1].split("</tr>")[0]
    assert '<td class="num">1</td><td class="num">0</td>' in row  # current 1, proposed 0
    changed = html.split('id="bo-changed-loans"')[1].split("</table>")[0]
    assert 'data-loan="A-1"' in changed and 'data-loan="A-2"' in changed and 'data-loan="E-1"' not in changed
    assert client.get(url).status_code == 200  # the form, prefilled with the saved policy
    client.force_login(make_user("outsider"))
    assert client.get(url).status_code == 403


def test_the_tier_change_page_links_to_the_preview(client, tier, monkeypatch):
    from django.contrib import admin

    # The tier admin names this template in change_form_template (see the README's operator screens).
    monkeypatch.setattr(
        admin.site._registry[CreditTier], "change_form_template", "admin/loans/credittier/change_form.html"
    )
    client.force_login(make_user("boss", is_superuser=True))

    html = client.get(f"/admin/loans/credittier/{tier.pk}/change/").content.decode()

    assert f'href="/admin/loans/credittier/{tier.pk}/preview/" class="bo-preview-link"' in html
