"""The file an agency receives with a placement: one row per case, masked as the agency's contract allows."""

from __future__ import annotations

import csv
import hashlib
import io

from backoffice.exports import escape_formula
from backoffice.masking import mask_email, mask_name, mask_phone
from loans.schedule import dpd_bucket

from .models import AgencyPlacement

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
                    case.dpd,
                    dpd_bucket(case.dpd),
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
