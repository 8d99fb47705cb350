"""Each role's permissions, checked through the admin with a logged-in user."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from backoffice import roles
from core.models import AuditEvent
from loans.models import CreditTier, Customer
from tests.factories import make_customer, make_tier, make_user

pytestmark = pytest.mark.django_db

CUSTOMER_FILE = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason\nRC1,Rita,13800138021,,,en,Asia/Shanghai,,,,,,,\n"
)


def login(client, group):
    user = make_user(f"user-{group.lower().replace(' ', '-')}", group=group)
    client.force_login(user)
    return user


def csv_format_index() -> str:
    formats = admin.site._registry[Customer].get_import_formats()
    return str(next(i for i, f in enumerate(formats) if f.__name__ == "CSV"))


def test_the_migration_creates_the_four_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "Operations",
        "Collector",
        "Compliance officer",
        "Administrator",
    }


def test_compliance_officers_view_and_export_but_get_403_on_change_add_and_delete(client):
    customer = make_customer()
    tier = make_tier()
    login(client, roles.COMPLIANCE_OFFICER)
    assert client.get(reverse("admin:loans_customer_changelist")).status_code == 200
    assert (
        client.get(reverse("admin:loans_customer_change", args=[customer.pk])).status_code == 200
    )  # read-only view
    assert client.get(reverse("admin:loans_customer_export")).status_code == 200
    assert (
        client.post(reverse("admin:loans_customer_change", args=[customer.pk]), {"name": "X"}).status_code
        == 403
    )
    assert client.get(reverse("admin:loans_customer_add")).status_code == 403
    assert client.get(reverse("admin:loans_credittier_delete", args=[tier.pk])).status_code == 403
    assert (
        client.post(reverse("admin:loans_credittier_delete", args=[tier.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert client.get(reverse("admin:loans_customer_import")).status_code == 403
    assert CreditTier.objects.filter(pk=tier.pk).exists()


def test_compliance_officers_do_not_see_personal_data_by_default():
    group = Group.objects.get(name=roles.COMPLIANCE_OFFICER)
    assert not group.permissions.filter(codename="view_personal_data").exists()
    assert group.permissions.filter(codename="export_auditevent").exists()
    assert not group.permissions.filter(codename__regex=r"^(add|change|delete)_").exists()


def test_collectors_see_customers_but_cannot_change_tiers(client):
    customer = make_customer()
    tier = make_tier()
    login(client, roles.COLLECTOR)
    assert client.get(reverse("admin:loans_customer_change", args=[customer.pk])).status_code == 200
    assert client.get(reverse("admin:loans_installment_changelist")).status_code == 200
    assert (
        client.post(reverse("admin:loans_credittier_change", args=[tier.pk]), {"name": "Mine"}).status_code
        == 403
    )
    assert client.get(reverse("admin:loans_credittier_add")).status_code == 403


def test_collectors_work_call_tasks_and_promises_when_collections_has_them():
    granted = set(Group.objects.get(name=roles.COLLECTOR).permissions.values_list("codename", flat=True))
    existing = set(
        Permission.objects.filter(content_type__app_label="collections").values_list("codename", flat=True)
    )
    for codename in (
        "view_calltask",
        "change_calltask",
        "view_promisetopay",
        "add_promisetopay",
        "view_collectioncase",
    ):
        if codename in existing:
            assert codename in granted
    assert "change_collectioncase" not in granted


def test_a_user_without_import_permission_cannot_import(client):
    login(client, roles.COLLECTOR)
    assert client.get(reverse("admin:loans_customer_import")).status_code == 403
    response = client.post(
        reverse("admin:loans_customer_import"),
        {"format": csv_format_index(), "import_file": SimpleUploadedFile("c.csv", CUSTOMER_FILE.encode())},
    )
    assert response.status_code == 403
    assert not Customer.objects.filter(ref="RC1").exists()


def test_operations_import_with_a_preview_then_a_confirmation(client):
    login(client, roles.OPERATIONS)
    response = client.post(
        reverse("admin:loans_customer_import"),
        {
            "format": csv_format_index(),
            "import_file": SimpleUploadedFile("customers.csv", CUSTOMER_FILE.encode()),
        },
    )
    assert response.status_code == 200
    assert not Customer.objects.filter(ref="RC1").exists()  # the preview saves nothing
    confirm = response.context["confirm_form"]
    response = client.post(reverse("admin:loans_customer_process_import"), confirm.initial)
    assert response.status_code == 302
    assert Customer.objects.get(ref="RC1").phone == "+8613800138021"
    event = AuditEvent.objects.get(action="backoffice.import.completed")
    assert event.actor == "user-operations" and event.after["file_name"] == "customers.csv"
    assert len(event.after["sha256"]) == 64


def test_the_admin_preview_lists_bad_cells_by_line_and_column(client):
    login(client, roles.OPERATIONS)
    bad = CUSTOMER_FILE + "RC2,Ray,12ab,,,en,Asia/Shanghai,,,,,,,\n"
    response = client.post(
        reverse("admin:loans_customer_import"),
        {"format": csv_format_index(), "import_file": SimpleUploadedFile("customers.csv", bad.encode())},
    )
    assert "line 3, column phone: “12ab” is not a phone number." in response.content.decode()
    assert "confirm_form" not in response.context or response.context["confirm_form"] is None
    assert not Customer.objects.filter(ref__in=["RC1", "RC2"]).exists()


def test_operations_configure_tiers_and_the_change_is_audited(client):
    tier = make_tier(code="OPS", min_score=100, max_score=199)
    login(client, roles.OPERATIONS)
    data = {
        "code": "OPS",
        "name": "Renamed",
        "min_score": 100,
        "max_score": 199,
        "risk_level": "high",
        "grace_period_days": 5,
        "max_contacts_per_week": 4,
        "channel_order": "sms,push",
    }
    # Other apps may add inlines to the tier page: send their empty management forms.
    page = client.get(reverse("admin:loans_credittier_change", args=[tier.pk]))
    for formset in page.context["inline_admin_formsets"]:
        prefix = formset.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})
    response = client.post(reverse("admin:loans_credittier_change", args=[tier.pk]), data)
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else response
    )
    tier.refresh_from_db()
    assert tier.name == "Renamed"
    assert AuditEvent.objects.filter(action="loans.credittier.changed").exists()


def test_administrators_have_every_permission():
    group = Group.objects.get(name=roles.ADMINISTRATOR)
    assert group.permissions.count() == Permission.objects.count()


def test_syncing_roles_is_idempotent_and_grants_permissions_of_models_added_later():
    assert set(roles.sync_roles().values()) == {0}
    content_type = ContentType.objects.get_for_model(Customer)
    later = Permission.objects.create(
        codename="export_latermodel", name="Can export later", content_type=content_type
    )
    added = roles.sync_roles()
    assert added[roles.COMPLIANCE_OFFICER] == 1 and added[roles.COLLECTOR] == 0
    assert Group.objects.get(name=roles.COMPLIANCE_OFFICER).permissions.filter(pk=later.pk).exists()


def management_forms(page) -> dict:
    """Empty management forms of the inlines on an admin change page (other apps may add theirs)."""
    data = {}
    for formset in page.context["inline_admin_formsets"]:
        prefix = formset.formset.prefix
        data[f"{prefix}-TOTAL_FORMS"] = formset.formset.management_form.initial["TOTAL_FORMS"]
        data[f"{prefix}-INITIAL_FORMS"] = formset.formset.management_form.initial["INITIAL_FORMS"]
        for i, form in enumerate(formset.formset.forms):
            if form.instance.pk:
                data[f"{prefix}-{i}-id"] = form.instance.pk
                fk = formset.formset.fk.name
                data[f"{prefix}-{i}-{fk}"] = formset.formset.instance.pk
    return data


def test_a_customer_page_shows_loans_and_instalments_and_operations_pin_the_tier_with_a_reason(client):
    from tests.factories import make_installment, make_loan

    low, high = (
        make_tier(code="PLOW", min_score=700, max_score=799),
        make_tier(code="PHI", min_score=300, max_score=699),
    )
    customer = make_customer(credit_score=650)
    assert customer.tier == high
    make_installment(make_loan(customer, ref="L-PAGE"), seq=1)
    login(client, roles.OPERATIONS)
    url = reverse("admin:loans_customer_change", args=[customer.pk])
    page = client.get(url)
    assert "L-PAGE" in page.content.decode() and "customer-instalments" in page.content.decode()
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields if form.initial.get(name) is not None}
    data.update({k: ("on" if v else "") for k, v in data.items() if isinstance(v, bool)})
    data = {k: v for k, v in data.items() if v != ""}
    data.update(management_forms(page))
    data.update({"tier": low.pk, "is_tier_pinned": "on", "tier_pin_reason": "Restructured repayment plan"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.tier == low and customer.is_tier_pinned
    event = AuditEvent.objects.get(action="loans.customer.tier_pinned")
    assert (
        event.before["tier_id"] == high.pk and event.after["tier_pin_reason"] == "Restructured repayment plan"
    )


def test_compliance_officers_see_customers_masked_and_operations_see_them_in_full(client):
    customer = make_customer(name="王小明", phone="+8613812345678", email="wang@example.com")
    url = reverse("admin:loans_customer_change", args=[customer.pk])
    login(client, roles.COMPLIANCE_OFFICER)
    for page in (client.get(reverse("admin:loans_customer_changelist")), client.get(url)):
        text = page.content.decode()
        assert "+86138****5678" in text and "王**" in text
        assert "13812345678" not in text and "王小明" not in text and "wang@example.com" not in text
    client.logout()
    login(client, roles.OPERATIONS)
    assert "13812345678" in client.get(url).content.decode()


def admin_urls(model) -> dict[str, str]:
    info = model._meta.app_label, model._meta.model_name
    return {
        "add": reverse("admin:{}_{}_add".format(*info)),
        "change": reverse("admin:{}_{}_change".format(*info), args=["1"]),
        "delete": reverse("admin:{}_{}_delete".format(*info), args=["1"]),
        "changelist": reverse("admin:{}_{}_changelist".format(*info)),
    }


def test_compliance_officers_can_add_change_or_delete_nothing_in_any_admin(client, rf):
    """Every registered model of every app (loan book, reminders, collections, audit, django-q2, auth)."""
    officer = login(client, roles.COMPLIANCE_OFFICER)
    request = rf.get("/admin/")
    request.user = officer
    refused = []
    for model, model_admin in admin.site._registry.items():
        urls = admin_urls(model)
        label = model._meta.label
        if client.get(urls["add"]).status_code != 403:
            refused.append(f"{label}: add page opens")
        if client.post(urls["add"], {}).status_code != 403:
            refused.append(f"{label}: add accepted")
        if client.post(urls["change"], {}).status_code != 403:
            refused.append(f"{label}: change accepted")
        if client.post(urls["delete"], {"post": "yes"}).status_code != 403:
            refused.append(f"{label}: delete accepted")
        if (
            model_admin.has_add_permission(request)
            or model_admin.has_change_permission(request)
            or model_admin.has_delete_permission(request)
        ):
            refused.append(f"{label}: add, change or delete permission")
        actions = set(model_admin.get_actions(request))
        if actions:
            refused.append(f"{label}: actions {sorted(actions)}")
    assert refused == []


def test_compliance_officers_see_every_product_list_they_may_review(client):
    from django_q.models import Failure, Schedule

    from core.models import AuditEvent
    from notifications.models import NotificationLog

    login(client, roles.COMPLIANCE_OFFICER)
    for model in (Customer, CreditTier, AuditEvent, NotificationLog, Schedule, Failure):
        assert client.get(admin_urls(model)["changelist"]).status_code == 200, model


def make_failed_task():
    import uuid

    from django.utils import timezone
    from django_q.models import Task

    now = timezone.now()
    return Task.objects.create(
        id=uuid.uuid4().hex,
        name="failed-one",
        func="math.floor",
        args=(1.5,),
        kwargs={},
        started=now,
        stopped=now,
        success=False,
        result="boom",
    )


def resubmit(client, task):
    return client.post(
        reverse("admin:django_q_failure_changelist"),
        {"action": "resubmit_task", "_selected_action": [task.pk], "index": 0},
    )


def test_viewing_background_tasks_does_not_allow_resubmitting_them(client):
    from django_q.models import Failure, OrmQ

    task = make_failed_task()
    for role in (roles.COMPLIANCE_OFFICER, roles.OPERATIONS):
        client.force_login(make_user(f"tasks-{role.lower().replace(' ', '-')}", group=role))
        assert client.get(reverse("admin:django_q_failure_changelist")).status_code == 200
        resubmit(client, task)
        assert Failure.objects.filter(pk=task.pk).exists() and not OrmQ.objects.exists()


def test_an_administrator_resubmits_a_failed_task_and_it_is_audited(client):
    from django_q.models import Failure, OrmQ

    task = make_failed_task()
    login(client, roles.ADMINISTRATOR)
    assert resubmit(client, task).status_code == 302
    assert not Failure.objects.filter(pk=task.pk).exists() and OrmQ.objects.count() == 1
    event = AuditEvent.objects.get(action="django_q.failure.resubmitted")
    assert event.actor == "user-administrator" and event.after == {"tasks": ["failed-one"]}


def test_adding_and_changing_customers_does_not_allow_importing_them(client):
    user = make_user("clerk")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="loans",
            codename__in=["view_customer", "add_customer", "change_customer", "view_personal_data"],
        )
    )
    client.force_login(user)
    assert client.get(reverse("admin:loans_customer_add")).status_code == 200
    assert client.get(reverse("admin:loans_customer_import")).status_code == 403
    response = client.post(
        reverse("admin:loans_customer_import"),
        {"format": csv_format_index(), "import_file": SimpleUploadedFile("c.csv", CUSTOMER_FILE.encode())},
    )
    assert response.status_code == 403 and not Customer.objects.filter(ref="RC1").exists()
    user.user_permissions.add(Permission.objects.get(codename="import_customer"))
    client.force_login(get_user_model().objects.get(pk=user.pk))
    assert client.get(reverse("admin:loans_customer_import")).status_code == 200
