"""Masking of personal data (names, phones, emails) for screens and exports.

Who may see personal data unmasked is one permission: ``loans.view_personal_data``. Everyone else sees
``张*``, ``A**** S****``, ``+86138****5678`` and ``a***@example.com``, also inside free text such as message
bodies, where known values and anything that looks like a phone number or an email address are masked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import phonenumbers

MASK = "*"

EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
# A phone inside text: "+86 138 1234 5678", "+8613812345678", "138-1234-5678", "13812345678". Only ASCII
# letters and digits count as neighbours, so a number glued to Chinese text ("请致电13812345678") is found,
# while a reference such as L2026000123 is not. Dates (8 digits) stay below the threshold.
PHONE_RE = re.compile(r"(?<![A-Za-z0-9_+])(\+?\(?\d[\d\- ()]{6,}\d)(?![A-Za-z0-9_])")
MIN_PHONE_DIGITS = 9
MIN_INTERNATIONAL_DIGITS = 8


def _is_cjk(char: str) -> bool:
    return "\u2e80" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff" or "\u3400" <= char <= "\u4dbf"


def mask_name(name: str) -> str:
    """``张伟`` -> ``张*``; ``Alice Smith`` -> ``A**** S****``: each word keeps its first character."""
    if not name:
        return name or ""
    words = []
    for word in name.split(" "):
        if not word:
            words.append(word)
        elif len(word) == 1:
            words.append(word if not word.isalpha() else MASK)
        else:
            words.append(word[0] + MASK * (len(word) - 1))
    return " ".join(words)


# Exports mask millions of rows of the same customers: each phone is worked out once per process. Bounded, so
# memory stays flat whatever the export's size.
@functools.lru_cache(maxsize=8192)
def mask_phone(phone: str) -> str:
    """``+8613812345678`` -> ``+86138****5678``: country code, first three and last four digits stay."""
    if not phone:
        return phone or ""
    raw = phone.strip()
    digits = re.sub(r"\D", "", raw)
    prefix, national = "", digits
    if raw.startswith("+"):
        cc = country_code_of(digits)
        if cc:
            prefix, national = f"+{cc}", digits[len(cc) :]
        else:
            prefix = "+"
    if len(national) >= 8:
        return prefix + national[:3] + MASK * (len(national) - 7) + national[-4:]
    if len(national) > 2:
        return prefix + MASK * (len(national) - 2) + national[-2:]
    return prefix + MASK * len(national)


def country_code_of(digits: str) -> str:
    """The calling code an international number's digits start with ("86" of "8613812345678"), or "".

    Calling codes are a prefix code (no code is the start of another), so the first 1-3 digit prefix that is
    a known code is the one: a dictionary look-up instead of a full parse, for millions of exported rows.
    """
    for size in (1, 2, 3):
        if len(digits) > size and int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[:size]
    return ""


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: the domain stays, the mailbox keeps one character."""
    if not email:
        return email or ""
    local, at, domain = email.partition("@")
    if not at:
        return mask_name(email)
    return (local[:1] or MASK) + MASK * 3 + "@" + domain


@functools.lru_cache(maxsize=8192)
def _phone_variants(phone: str) -> frozenset[str]:
    """The spellings a known phone may take inside text: E.164, without the plus, the national number."""
    variants = {phone}
    digits = re.sub(r"\D", "", phone)
    if digits:
        variants.add(digits)
    if phone.startswith("+"):
        cc = country_code_of(digits)
        if cc:
            variants.add(digits[len(cc) :].lstrip("0") or digits[len(cc) :])
    return frozenset(v for v in variants if len(v) >= 5)


@functools.lru_cache(maxsize=8192)
def _name_parts(name: str) -> frozenset[str]:
    """Parts of a name that identify the person on their own inside a message (given name, family name)."""
    parts = {name}
    words = [w for w in name.split() if len(w) >= 3]
    parts.update(words)
    if name and all(_is_cjk(c) for c in name) and len(name) >= 3:
        parts.add(name[1:])  # the given name of a three-character Chinese name
    return frozenset(p for p in parts if p)


def _mask_found_phone(match: re.Match) -> str:
    text = match.group(1)
    digits = re.sub(r"\D", "", text)
    threshold = MIN_INTERNATIONAL_DIGITS if text.startswith("+") else MIN_PHONE_DIGITS
    if len(digits) < threshold:
        return match.group(0)
    return mask_phone(("+" if text.startswith("+") else "") + digits)


def mask_text(
    text: str,
    *,
    names: Iterable[str] = (),
    phones: Iterable[str] = (),
    emails: Iterable[str] = (),
) -> str:
    """Mask the known ``names``, ``phones`` and ``emails`` in ``text`` and any other phone-like or email-like
    sequence. Non-strings are returned unchanged."""
    if not isinstance(text, str) or not text:
        return text
    known_emails, known_phones, known_names = _known_replacements(tuple(names), tuple(phones), tuple(emails))
    for old, new in known_emails:
        if old in text:
            text = text.replace(old, new)
    if "@" in text:
        text = EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text)
    for old, new in known_phones:
        if old in text:
            text = text.replace(old, new)
    text = PHONE_RE.sub(_mask_found_phone, text)
    for old, new in known_names:
        if old in text:
            text = text.replace(old, new)
    return text


@functools.lru_cache(maxsize=8192)
def _known_replacements(names: tuple, phones: tuple, emails: tuple) -> tuple[tuple, tuple, tuple]:
    """What to replace for one customer, longest first (computed once per customer, not once per message)."""
    known_emails = tuple((e, mask_email(e)) for e in sorted({e for e in emails if e}, key=len, reverse=True))
    variants: set[str] = set()
    for phone in phones:
        if phone:
            variants |= _phone_variants(phone)
    known_phones = tuple((v, mask_phone(v)) for v in sorted(variants, key=len, reverse=True))
    parts: set[str] = set()
    for name in names:
        if name:
            parts |= _name_parts(name)
    known_names = tuple((p, mask_name(p)) for p in sorted(parts, key=len, reverse=True))
    return known_emails, known_phones, known_names


def mask_destination(destination: str) -> str:
    """A contact's destination: an email, a phone number or a device token, masked as what it is."""
    if not destination:
        return destination or ""
    if "@" in destination:
        return mask_email(destination)
    if re.fullmatch(r"\+?[\d\- ()]{5,}", destination.strip()):
        return mask_phone(destination)
    return destination[:4] + MASK * 4


NAME_KEYS = frozenset({"name", "customer_name", "full_name", "first_name", "last_name"})
PHONE_KEYS = frozenset({"phone", "phone_number", "mobile"})
EMAIL_KEYS = frozenset({"email", "email_address"})
TOKEN_KEYS = frozenset({"push_token", "destination"})
# Message text quotes the customer's name in words no pattern recognises: masked when the name is known in
# the same value, withheld otherwise.
TEXT_KEYS = frozenset({"body", "subject", "text", "message"})


def withhold(text: str) -> str:
    return f"[withheld: {len(text)} characters]"


def mask_value(value, *, names: Iterable[str] = (), phones: Iterable[str] = (), emails: Iterable[str] = ()):
    """``mask_text`` applied through a JSON value (dicts, lists, strings), as stored in audit before/after.

    In a dict, the values of personal keys (``name``, ``phone``, ``email``, ``destination``...) are masked as
    what they are, and are also masked wherever else they appear in that dict (a body quoting the name). Message
    text (``body``, ``subject``...) with no known name to mask in it is withheld (only its length is kept)."""
    if isinstance(value, str):
        return mask_text(value, names=names, phones=phones, emails=emails)
    if isinstance(value, list):
        return [mask_value(v, names=names, phones=phones, emails=emails) for v in value]
    if not isinstance(value, dict):
        return value
    names, phones, emails = list(names), list(phones), list(emails)
    for key, item in value.items():
        if not isinstance(item, str):
            continue
        if key in NAME_KEYS:
            names.append(item)
        elif key in PHONE_KEYS:
            phones.append(item)
        elif key in EMAIL_KEYS:
            emails.append(item)
    masked = {}
    for key, item in value.items():
        if isinstance(item, str) and key in NAME_KEYS:
            masked[key] = mask_name(item)
        elif isinstance(item, str) and key in PHONE_KEYS:
            masked[key] = mask_phone(item)
        elif isinstance(item, str) and key in EMAIL_KEYS:
            masked[key] = mask_email(item)
        elif isinstance(item, str) and key in TOKEN_KEYS:
            masked[key] = mask_destination(item)
        elif isinstance(item, str) and key in TEXT_KEYS and not any(names):
            masked[key] = withhold(item) if item else item
        else:
            masked[key] = mask_value(item, names=names, phones=phones, emails=emails)
    return masked


def can_see_personal_data(user) -> bool:
    """Whether ``user`` may see names, phones and emails unmasked."""
    return bool(user is not None and user.has_perm("loans.view_personal_data"))


__all__ = [
    "can_see_personal_data",
    "mask_destination",
    "mask_email",
    "mask_name",
    "mask_phone",
    "mask_text",
    "mask_value",
]
