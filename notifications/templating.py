"""Template placeholders: validation when saving and rendering when sending."""

from __future__ import annotations

import string

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

PLACEHOLDERS = (
    "customer_name",
    "amount_due",
    "currency",
    "due_date",
    "days_until_due",
    "days_past_due",
    "grace_end_date",
    "loan_ref",
    "how_to_pay",
    "loans",
)

_formatter = string.Formatter()


def placeholders_in(text: str) -> list[str]:
    """The placeholder names used in ``text``; raise ValidationError on a malformed brace."""
    try:
        return [field for _lit, field, _spec, _conv in _formatter.parse(text) if field is not None]
    except ValueError as exc:
        raise ValidationError(_("Malformed placeholder: %(error)s. Write {name}, or {{ for a literal brace.") % {"error": exc}) from exc


def validate_template_text(text: str) -> None:
    names = placeholders_in(text)
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise ValidationError(
            _("Unknown placeholder(s): %(unknown)s. Known: %(known)s.")
            % {"unknown": ", ".join("{%s}" % n for n in unknown), "known": ", ".join("{%s}" % p for p in PLACEHOLDERS)},
            code="unknown_placeholder",
        )


def render(text: str, context: dict[str, object]) -> str:
    return text.format_map({name: context.get(name, "") for name in PLACEHOLDERS})
