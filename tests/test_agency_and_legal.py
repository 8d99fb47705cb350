"""Hand-over: agency placements with a masked, escaped CSV that can be recalled; legal referral freezes contact."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse

from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.legal import refer_to_legal
from debt_collection.models import AgencyPlacement, CallTask, LegalReferral
from debt_collection.placements import place_with_agency, recall_placement
from notifications.models import NotificationLog

from .factories import make_user
from .factories_collections import (
    day,
    high_risk_tier,
    make_agency,
    make_collector,
    make_overdue_loan,
    open_case,
    overdue_templates,
)

pytestmark = pytest.mark.django_db


def rows_of(placement):
    return list(csv.DictReader(io.StringIO(placement.file)))


def test_a_placement_file_is_masked_unless_the_agency_contract_allows_personal_data():
    tier = high_risk_tier()
    loan = make_overdue_loan(tier, name="张伟国", phone="+8613812345678", email="zhang@example.com")
    other = make_overdue_loan(tier, name="Alice Smith")
    advance_collections(day(10))
    cases = [open_case(loan), open_case(other)]
    masked_agency = make_agency("MASK")
    open_agency = make_agency("OPEN", may_see_personal_data=True)

    placement = place_with_agency(cases, masked_agency, actor="ops", at=day(10, hour=12))

    rows = rows_of(placement)
    assert [r["loan_ref"] for r in rows] == [loan.ref, other.ref]
    assert rows[0]["customer_name"] == "张**" and rows[0]["phone"] == "'+86138****5678"
    assert rows[0]["email"] == "z***@example.com" and rows[1]["customer_name"] == "A**** S****"
    assert "13812345678" not in placement.file and "张伟国" not in placement.file
    assert (
        rows[0]["amount_overdue"] == "500.00" and rows[0]["dpd"] == "10" and rows[0]["dpd_bucket"] == "1-30"
    )
    assert AuditEvent.objects.filter(action="collections.case.placed").count() == 2

    with pytest.raises(ValidationError):  # already placed
        place_with_agency(cases[:1], open_agency, actor="ops", at=day(10, hour=12))
    recall_placement(placement, actor="ops", at=day(11))
    unmasked = place_with_agency(cases[:1], open_agency, actor="ops", at=day(12))
    assert rows_of(unmasked)[0]["customer_name"] == "张伟国"
    placement.refresh_from_db()
    assert placement.recalled_at == day(11) and placement.recall_reason == "recalled"
    assert AuditEvent.objects.filter(
        action="collections.placement.recalled", object_id=str(placement.pk)
    ).exists()


def test_formula_cells_in_the_placement_file_are_escaped():
    tier = high_risk_tier()
    loan = make_overdue_loan(tier, name='=HYPERLINK("http://x")')
    advance_collections(day(10))
    placement = place_with_agency(
        [open_case(loan)], make_agency("OPEN", may_see_personal_data=True), actor="ops", at=day(10, hour=12)
    )

    assert rows_of(placement)[0]["customer_name"].startswith("'=")


def test_the_placement_csv_is_downloaded_in_the_admin_only_with_the_permission(client):
    tier = high_risk_tier()
    loan = make_overdue_loan(tier, phone="+8613812345678")
    advance_collections(day(10))
    placement = place_with_agency([open_case(loan)], make_agency("MASK"), actor="ops", at=day(10, hour=12))
    url = reverse("admin:collections_agencyplacement_download", args=[placement.pk])
    clerk = make_user("clerk", password=None)
    clerk.user_permissions.add(Permission.objects.get(codename="view_agencyplacement"))
    client.force_login(clerk)
    assert client.get(url).status_code == 403

    clerk.user_permissions.add(Permission.objects.get(codename="download_placement_file"))
    response = client.get(url)

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    body = response.content.decode()
    assert loan.ref in body and "13812345678" not in body
    assert AuditEvent.objects.filter(action="collections.placement.downloaded").exists()


def test_placing_cases_in_the_admin_is_an_action_with_an_agency_form(client):
    tier = high_risk_tier()
    loans = [make_overdue_loan(tier) for _ in range(2)]
    advance_collections(day(10))
    agency = make_agency("AG1")
    collector = make_collector("placer")
    client.force_login(collector)
    ids = [open_case(loan).pk for loan in loans]
    url = reverse("admin:collections_collectioncase_changelist")

    form = client.post(url, {"action": "place_with_agency_action", "_selected_action": ids})
    assert form.status_code == 200 and b"agency" in form.content
    done = client.post(
        url,
        {"action": "place_with_agency_action", "_selected_action": ids, "apply": "1", "agency": agency.pk},
    )

    assert done.status_code == 302
    placement = AgencyPlacement.objects.get()
    assert (
        sorted(placement.cases.values_list("pk", flat=True)) == sorted(ids)
        and placement.placed_by == "placer"
    )


def test_a_legal_referral_freezes_all_automatic_contact_for_the_loan():
    overdue_templates()
    tier = high_risk_tier()
    make_collector("ma")
    loan = make_overdue_loan(tier)
    advance_collections(day(3, hour=7))  # the SMS waits for the window; a call task is open
    case = open_case(loan)
    placement = place_with_agency([case], make_agency("AG1"), actor="ops", at=day(3, hour=7))
    pending = NotificationLog.objects.filter(customer=loan.customer, status__in=["planned", "deferred"])
    assert pending.exists()

    referral = refer_to_legal(case, actor="ops", at=day(3, hour=8), note="fraud suspected")

    case.refresh_from_db()
    assert case.is_frozen and case.stage == "legal" and referral.dpd == 3
    assert not pending.exists()
    assert CallTask.objects.get(case=case).status == "cancelled"
    placement.refresh_from_db()
    assert placement.recall_reason == "legal"
    # The ladder no longer moves: nothing more is planned or scheduled for the loan.
    advance_collections(day(20))
    assert not NotificationLog.objects.filter(
        customer=loan.customer, status__in=["planned", "deferred"]
    ).exists()
    assert CallTask.objects.filter(case=case).count() == 1
    with pytest.raises(ValidationError):
        refer_to_legal(case, actor="ops", at=day(20))
    assert LegalReferral.objects.count() == 1
