"""Agency placements: open cases handed to a third-party agency with the file it receives (one row per case,
masked as the agency's contract allows), and taken back."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import Event, about, actor_name, log_events
from core.bulk import bulk_update_rows
from core.exports.writers import escape_formula
from core.masking import mask_email, mask_name, mask_phone

from .models import Agency, AgencyPlacement, CollectionCase

COLUMNS = [
    "case_id",
    "loan_ref",
    "customer_ref",
    "customer_name",
    "phone",
    "email",
    "currency",
    "amount_overdue",
    "dpd",
    "dpd_bucket",
    "stage",
    "opened_at",
]


def escape_cell(value) -> str:
    """Text as the agency's spreadsheet should show it, never run as a formula."""
    return escape_formula("" if value is None else str(value))


def placement_rows(placement: AgencyPlacement) -> list[list[str]]:
    masked = not placement.agency.may_see_personal_data
    rows = []
    for case in placement.cases.select_related("loan__customer").order_by("pk"):
        customer = case.loan.customer
        name, phone, email = customer.name, str(customer.phone or ""), customer.email
        if masked:
            name, phone, email = mask_name(name), mask_phone(phone), mask_email(email)
        rows.append(
            [
                escape_cell(v)
                for v in (
                    case.pk,
                    case.loan.ref,
                    customer.ref,
                    name,
                    phone,
                    email,
                    case.loan.currency,
                    case.amount_overdue,
                    case.days_past_due(placement.placed_at),
                    case.dpd_bucket(placement.placed_at),
                    case.stage,
                    case.opened_at.isoformat(),
                )
            ]
        )
    return rows


def placement_csv(placement: AgencyPlacement) -> tuple[str, str]:
    """The CSV text of the placement and its SHA-256."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(placement_rows(placement))
    text = out.getvalue()
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def place_with_agency(
    cases: Iterable[CollectionCase],
    agency: Agency,
    *,
    actor: Any,
    at: dt.datetime,
    reason: str = AgencyPlacement.Reason.MANUAL,
) -> AgencyPlacement:
    """Hand open cases to ``agency`` as one placement, with the CSV file the agency receives (masked unless
    its contract allows personal data, formula cells escaped). Writes ``collections.case.placed`` per case.

    Raises ``ValidationError`` for closed or frozen cases, cases already placed, or an inactive agency.
    """
    actor_str = actor_name(actor)
    cases = list(cases)
    if not agency.is_active:
        raise ValidationError("This agency takes no new placements.")
    if not cases:
        raise ValidationError("Choose at least one case.")
    with transaction.atomic():
        ids = [c.pk for c in cases]
        locked = list(
            CollectionCase.objects.select_related("loan__customer")
            .select_for_update(of=("self",))
            .filter(pk__in=ids)
        )
        bad = [c.pk for c in locked if not c.is_open or c.is_frozen]
        if bad:
            raise ValidationError(f"Cases {bad} are closed or with legal and cannot be placed.")
        already = sorted(
            set(
                AgencyPlacement.cases.through.objects.filter(
                    collectioncase_id__in=ids, agencyplacement__recalled_at__isnull=True
                ).values_list("collectioncase_id", flat=True)
            )
        )
        if already:
            raise ValidationError(f"Cases {already} are already placed with an agency.")
        placement = AgencyPlacement.objects.create(agency=agency, placed_at=at, placed_by=actor_str)
        placement.cases.set(locked)
        placement.file, placement.file_sha256 = placement_csv(placement)
        placement.save(update_fields=["file", "file_sha256"])
        log_events(
            Event(
                action="collections.case.placed",
                actor=actor_str,
                **about(CollectionCase, c.pk),
                at=at,
                after={
                    "placement_id": placement.pk,
                    "agency": agency.code,
                    "masked": not agency.may_see_personal_data,
                    "dpd": c.days_past_due(at),
                    "amount_overdue": c.amount_overdue,
                    "reason": reason,
                    "file_sha256": placement.file_sha256,
                },
            )
            for c in locked
        )
    return placement


def recall_event(placement: AgencyPlacement, actor: str, at: dt.datetime, reason: str) -> Event:
    """The audit event of a placement taken back from its agency (an operator, a legal referral, a cure)."""
    return Event(
        action="collections.placement.recalled",
        actor=actor,
        **about(AgencyPlacement, placement.pk),
        at=at,
        before={"recalled_at": None},
        after={
            "recalled_at": at,
            "reason": reason,
            "case_ids": list(placement.cases.values_list("pk", flat=True)),
        },
    )


def recall_placement(
    placement: AgencyPlacement, *, actor: Any, at: dt.datetime, reason: str = AgencyPlacement.Reason.RECALLED
) -> AgencyPlacement:
    """Take the cases back from the agency. Writes ``collections.placement.recalled``.
    Raises ``ValidationError`` when already recalled."""
    actor_str = actor_name(actor)
    with transaction.atomic():
        placement = AgencyPlacement.objects.select_for_update().get(pk=placement.pk)
        if placement.recalled_at:
            raise ValidationError("This placement was already recalled.")
        log_events([recall_event(placement, actor_str, at, reason)])
        placement.recalled_at, placement.recalled_by, placement.recall_reason = at, actor_str, reason
        placement.save(update_fields=["recalled_at", "recalled_by", "recall_reason"])
    return placement


def recall_placements_of(case_ids: list[int], reason: str, *, at: dt.datetime, actor: Any) -> int:
    """Take back every active placement holding one of these cases (a legal referral, a cure). Writes
    ``collections.placement.recalled`` per placement; returns how many."""
    actor = actor_name(actor)
    placements = list(AgencyPlacement.objects.filter(cases__in=case_ids, recalled_at__isnull=True).distinct())
    if not placements:
        return 0
    log_events([recall_event(p, actor, at, reason) for p in placements])
    for p in placements:
        p.recalled_at, p.recalled_by, p.recall_reason = at, actor, reason
    bulk_update_rows(placements, ["recalled_at", "recalled_by", "recall_reason"])
    return len(placements)
