"""Template placeholders: validation when saving and rendering when sending."""

from __future__ import annotations

import functools
import re
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
    "pay_link",
    "unsubscribe_link",
    "loans",
)

_formatter = string.Formatter()


def placeholders_in(text: str) -> list[str]:
    """The placeholder names used in ``text``; raise ValidationError on a malformed brace."""
    try:
        return [field for _lit, field, _spec, _conv in _formatter.parse(text) if field is not None]
    except ValueError as exc:
        raise ValidationError(
            _("Malformed placeholder: %(error)s. Write {name}, or {{ for a literal brace.") % {"error": exc}
        ) from exc


@functools.lru_cache(maxsize=1024)
def placeholders_of(text: str) -> frozenset[str]:
    """The placeholder names ``text`` uses (``render`` fills in no other), known once per text: the dispatcher
    asks it for every message. A malformed text names every placeholder (``render`` then fails as it would)."""
    try:
        return frozenset(placeholders_in(text))
    except ValidationError:
        return frozenset(PLACEHOLDERS)


def validate_template_text(text: str) -> None:
    names = placeholders_in(text)
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise ValidationError(
            _("Unknown placeholder(s): %(unknown)s. Known: %(known)s.")
            % {
                "unknown": ", ".join(f"{{{n}}}" for n in unknown),
                "known": ", ".join(f"{{{p}}}" for p in PLACEHOLDERS),
            },
            code="unknown_placeholder",
        )


# A label is the text before a placeholder ending in a colon ("还款方式：{how_to_pay}", "Pay here: {pay_link}");
# it starts after the last end of a sentence or line before it.
_LABEL_END = re.compile(r"[:：][ \t]*$")
_SENTENCE_END = re.compile(r"(?:[\n。！？；]|[.!?;](?=\s))\s*")
_TERMINATORS = "。.!！?？;；"


def render(text: str, context: dict[str, object]) -> str:
    """``text`` with its placeholders filled in from ``context`` (a missing one is empty).

    A placeholder without a value leaves no dangling label: a label before it ("还款方式：", "How to pay: ") is
    dropped with it, from the start of its sentence or line (and the sentence's own end mark after it); a label
    right after another value keeps its words and loses only its colon. A line left empty goes with it."""
    values = {name: context.get(name, "") for name in PLACEHOLDERS}
    out: list[str] = []
    dropped = skip_terminator = False
    first = True
    for literal, name, spec, conversion in _formatter.parse(text):
        if skip_terminator:
            if literal[:1] in _TERMINATORS:
                literal = literal[1:]
                if next((piece for piece in reversed(out) if piece), "")[-1:].isspace():
                    literal = literal.lstrip(" \t")
            skip_terminator = False
        if name is None:
            out.append(literal)
            continue
        value = _formatter.format_field(_formatter.convert_field(values[name], conversion), spec or "")
        if value == "" and _LABEL_END.search(literal):
            boundaries = list(_SENTENCE_END.finditer(literal))
            if boundaries or first:
                literal = literal[: boundaries[-1].end()] if boundaries else ""
                skip_terminator = True
            else:
                literal = _LABEL_END.sub("", literal)
            dropped = True
        out.append(literal)
        out.append(value)
        first = False
    rendered = "".join(out)
    if dropped:
        rendered = re.sub(
            r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in rendered.split("\n"))
        ).strip()
    return rendered


# GSM 03.38: the basic set costs one septet, the extension set two (escape + character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
GSM7, UCS2 = "GSM-7", "UCS-2"


def sms_encoding(text: str) -> str:
    return GSM7 if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text) else UCS2


def sms_segments(text: str) -> tuple[int, int, str]:
    """``(characters, segments, encoding)`` of an SMS body.

    GSM-7 fits 160 septets in one message and 153 per part of a longer one (an extension character such as
    ``€`` or ``{`` takes two); any other character makes the whole message UCS-2: 70 code units alone, 67 per
    part (a character outside the basic plane, such as an emoji, takes two). A character that takes two units
    is never split across parts. An empty text is 0 segments.
    """
    if not text:
        return 0, 0, GSM7
    encoding = sms_encoding(text)
    if encoding == GSM7:
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        single, part = 160, 153
    else:
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, part = 70, 67
    if sum(costs) <= single:
        return len(text), 1, encoding
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return len(text), segments, encoding
