from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from core.imports.resource import run_import
from core.models import AuditEvent
from loans.admin import CreditTierAdmin
from notifications.admin import ReminderRuleInline
from notifications.models import ContactPolicy, ReminderRule, ReminderTemplate
from notifications.resources import ReminderRuleResource, ReminderTemplateResource
from notifications.templating import sms_segments

from .factories import make_tier, make_user
from .factories_reminders import make_debtor, make_rule, make_template

# The contact policy form's opt-out lines (every SMS and email carries one), as the admin shows them by default.
OPT_OUT_LINES = {
    "sms_opt_out_line_zh_hans": "回复TD退订",
    "sms_opt_out_line_en": "Reply STOP to opt out",
    "email_opt_out_line_zh_hans": "退订：{unsubscribe_link}",
    "email_opt_out_line_en": "Unsubscribe: {unsubscribe_link}",
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", (0, 0, "GSM-7")),
        ("a" * 160, (160, 1, "GSM-7")),
        ("a" * 161, (161, 2, "GSM-7")),
        ("a" * 306, (306, 2, "GSM-7")),
        ("a" * 307, (307, 3, "GSM-7")),
        # The euro sign is in the extension table: two septets, so 80 of them fill one message.
        ("€" * 80, (80, 1, "GSM-7")),
        ("€" * 81, (81, 2, "GSM-7")),
        ("您" * 70, (70, 1, "UCS-2")),
        ("您" * 71, (71, 2, "UCS-2")),
        ("您" * 134, (134, 2, "UCS-2")),
        ("您" * 135, (135, 3, "UCS-2")),
        # One Chinese character turns the whole message into UCS-2.
        ("a" * 70 + "您", (71, 2, "UCS-2")),
    ],
)
def test_it_counts_sms_characters_and_segments(text, expected):
    assert sms_segments(text) == expected


@pytest.mark.django_db
def test_saving_a_template_with_a_misspelt_placeholder_fails_naming_it():
    with pytest.raises(ValidationError) as excinfo:
        ReminderTemplate.objects.create(
            kind="pre_due", channel="sms", language="en", body="Hi {custmer_name}"
        )
    assert "{custmer_name}" in str(excinfo.value)
    assert not ReminderTemplate.objects.exists()


@pytest.mark.django_db
def test_templates_import_keyed_by_kind_channel_and_language():
    csv = (
        "kind,channel,language,subject,body\n"
        "pre_due,sms,en,,Dear {customer_name}: {amount_due} due {due_date}\n"
        'pre_due,email,zh-hans,还款提醒,"{customer_name}，您好：\n{loans}"\n'
    )
    result, errors = run_import(ReminderTemplateResource(), csv, file_name="templates.csv")
    assert errors == []
    again, errors = run_import(
        ReminderTemplateResource(), csv.replace("Dear", "Hello"), file_name="templates.csv"
    )
    assert errors == []
    assert ReminderTemplate.objects.count() == 2
    assert ReminderTemplate.objects.get(channel="sms").body.startswith("Hello {customer_name}")
    assert ReminderTemplate.objects.get(channel="email").body == "{customer_name}，您好：\n{loans}"


@pytest.mark.django_db
def test_an_imported_template_with_an_unknown_placeholder_is_a_row_error():
    csv = "kind,channel,language,subject,body\npre_due,sms,en,,fine {loan_ref}\npre_due,push,en,Hi,pay {amount_owed}\n"

    _result, errors = run_import(ReminderTemplateResource(), csv, file_name="templates.csv")

    assert len(errors) == 1
    assert errors[0].startswith("line 3, column body:") and "{amount_owed}" in errors[0]
    assert not ReminderTemplate.objects.exists()


@pytest.mark.django_db
def test_rules_import_keyed_by_tier_offset_channel_and_kind():
    tier = make_tier(code="LOW", grace_period_days=5)
    csv = "tier_code,offset_days,channel,kind,send_time\nLOW,-3,sms,pre_due,09:30\nLOW,2,push,grace,10:00\n"

    _result, errors = run_import(ReminderRuleResource(), csv, file_name="rules.csv")
    assert errors == []
    _result, errors = run_import(ReminderRuleResource(), csv.replace("09:30", "11:00"), file_name="rules.csv")
    assert errors == []

    rules = {(r.offset_days, r.channel): r for r in ReminderRule.objects.filter(tier=tier)}
    assert len(rules) == 2
    assert rules[(-3, "sms")].send_time == dt.time(11, 0)
    assert rules[(2, "push")].kind == "grace"


@pytest.mark.django_db
def test_a_rule_for_an_unknown_tier_or_a_kind_against_its_offset_is_a_row_error():
    make_tier(code="LOW", grace_period_days=3)
    csv = "tier_code,offset_days,channel,kind,send_time\nNOPE,-3,sms,pre_due,09:30\nLOW,3,sms,pre_due,09:30\nLOW,5,sms,grace,09:30\n"

    _result, errors = run_import(ReminderRuleResource(), csv, file_name="rules.csv")

    assert any(e.startswith("line 2, column tier_code") and "NOPE" in e for e in errors)
    assert any(e.startswith("line 3, column offset_days") and "negative" in e for e in errors)
    assert any(e.startswith("line 4, column offset_days") and "grace period" in e for e in errors)
    assert not ReminderRule.objects.exists()


@pytest.mark.django_db
def test_the_admin_previews_a_template_for_a_chosen_customer_with_sms_segments(admin_client):
    tier = make_tier()
    customer, installments = make_debtor(tier, loans=2, name="李雷", due_date=dt.date(2026, 12, 1))
    template = make_template(
        "pre_due",
        "sms",
        "zh-hans",
        body="{customer_name}您好，{due_date}应还{amount_due}{currency}：\n{loans}",
    )
    url = reverse("admin:notifications_remindertemplate_preview", args=[template.pk])

    response = admin_client.get(url, {"customer": customer.ref})

    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview["body"].startswith("李雷您好，2026-12-01应还1000.00CNY：\n")
    assert all(i.loan.ref in preview["body"] for i in installments)
    assert (preview["chars"], preview["segments"], preview["encoding"]) == sms_segments(preview["body"])
    assert preview["encoding"] == "UCS-2"
    content = response.content.decode()
    assert "李雷您好" in content and f"{preview['segments']} segment(s), UCS-2" in content


@pytest.mark.django_db
def test_the_preview_masks_personal_data_for_staff_without_the_permission(client):
    user = make_user("viewer", is_superuser=False)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_remindertemplate"))
    client.force_login(user)
    customer, _ = make_debtor(name="Alice Smith")
    template = make_template("pre_due", "email", "en", body="Dear {customer_name}")

    response = client.get(
        reverse("admin:notifications_remindertemplate_preview", args=[template.pk]),
        {"customer": customer.ref},
    )

    assert response.status_code == 200
    assert response.context["preview"]["body"].splitlines()[0] == "Dear A**** S****"


@pytest.mark.django_db
def test_the_preview_says_when_the_customer_reference_is_unknown(admin_client):
    template = make_template()

    response = admin_client.get(
        reverse("admin:notifications_remindertemplate_preview", args=[template.pk]), {"customer": "C-NOPE"}
    )

    assert response.status_code == 200 and response.context["not_found"] is True
    assert "C-NOPE" in response.content.decode()


@pytest.mark.django_db
def test_the_template_change_form_shows_the_sms_length_and_a_preview_link(admin_client):
    template = make_template(body="a" * 161)

    response = admin_client.get(reverse("admin:notifications_remindertemplate_change", args=[template.pk]))

    content = response.content.decode()
    assert "161 characters, 2 segment(s), GSM-7" in content
    assert reverse("admin:notifications_remindertemplate_preview", args=[template.pk]) in content


@pytest.mark.django_db
def test_rules_are_edited_inline_on_the_tier(admin_client):
    tier = make_tier()
    make_rule(tier, -3)

    response = admin_client.get(reverse("admin:loans_credittier_change", args=[tier.pk]))

    assert ReminderRuleInline in CreditTierAdmin.inlines
    assert response.status_code == 200
    assert "reminder_rules-TOTAL_FORMS" in response.content.decode()


@pytest.mark.django_db
def test_the_contact_policy_is_one_row_that_cannot_be_added_twice_or_deleted(admin_client):
    response = admin_client.get(reverse("admin:notifications_contactpolicy_changelist"))
    assert response.status_code == 302
    assert response.url == reverse("admin:notifications_contactpolicy_change", args=[1])

    assert admin_client.get(reverse("admin:notifications_contactpolicy_add")).status_code == 403
    assert admin_client.get(reverse("admin:notifications_contactpolicy_delete", args=[1])).status_code == 403


CALL_SETTINGS = {
    "max_calls_per_debt_in_7_days": "7",
    "call_pause_days_after_conversation": "7",
    "max_call_attempts_per_day": "3",
    "voicemail_text": "This is {agent_name} from {business_name}. Please call me back at {callback_number}.",
    "business_name": "Lotus",
    "callback_number": "400-800-1234",
}


@pytest.mark.django_db
def test_changing_the_contact_window_in_the_admin_is_audited(admin_client):
    url = reverse("admin:notifications_contactpolicy_change", args=[1])
    admin_client.get(url)
    data = {
        "window_start": "09:00",
        "window_end": "20:00",
        "holiday_country": "CN",
        "no_contact_on_holidays": "on",
        "default_language": "zh-hans",
        "max_send_attempts": "3",
        "retry_backoff_seconds": "300",
        "expire_after_hours": "48",
        **CALL_SETTINGS,
        **OPT_OUT_LINES,
    }

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = ContactPolicy.get()
    assert (policy.window_start, policy.window_end, policy.no_contact_on_holidays) == (
        dt.time(9),
        dt.time(20),
        True,
    )
    event = AuditEvent.objects.get(action="notifications.contactpolicy.changed")
    assert event.before["window_start"].startswith("08:00") and event.after["window_start"].startswith(
        "09:00"
    )


@pytest.mark.django_db
def test_the_outbox_is_a_read_only_list(admin_client):
    from notifications.channels import OutboxBackend
    from notifications.sending import OutgoingMessage

    OutboxBackend().send(OutgoingMessage("sms", "+8613800138000", "", "您好", "key-1"))

    response = admin_client.get(reverse("admin:notifications_outboxmessage_changelist"))

    assert response.status_code == 200 and "您好" in response.content.decode()
    assert admin_client.get(reverse("admin:notifications_outboxmessage_add")).status_code == 403


@pytest.mark.django_db
def test_the_admin_refuses_an_unknown_holiday_country_and_a_window_that_closes_before_it_opens(admin_client):
    url = reverse("admin:notifications_contactpolicy_change", args=[1])
    admin_client.get(url)
    data = {
        "window_start": "21:00",
        "window_end": "08:00",
        "holiday_country": "XX",
        "no_contact_on_holidays": "on",
        "default_language": "zh-hans",
        "max_send_attempts": "3",
        "retry_backoff_seconds": "300",
        "expire_after_hours": "48",
        **CALL_SETTINGS,
        **OPT_OUT_LINES,
    }

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"holiday_country", "window_end"}
    assert ContactPolicy.get().window_start == dt.time(8, 0)
