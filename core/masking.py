"""Masking of personal data (names, phones, emails) for screens and exports.

Who may see personal data unmasked is one permission: ``loans.view_personal_data``. Everyone else sees
``张*``, ``A**** S****``, ``+86138****5678`` and ``a***@example.com``, also inside free text such as message
bodies, where known values and anything that looks like a phone number or an email address are masked.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

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


# The same ranges as _is_cjk (U+3400-U+4DBF lies inside U+2E80-U+9FFF), for a whole string at C speed.
_ALL_CJK_RE = re.compile("[\u2e80-\u9fff\uf900-\ufaff]+")
_NON_DIGIT_RE = re.compile(r"\D")


def _digits(text: str) -> str:
    """The decimal digits of ``text`` (``re.sub(r"\\D", "", text)``), without the regex for ``+8613812345678``."""
    rest = text[1:] if text[:1] == "+" else text
    return rest if rest.isdecimal() else _NON_DIGIT_RE.sub("", text)


def mask_name(name: str) -> str:
    """``张伟`` -> ``张*``; ``Alice Smith`` -> ``A**** S****``: each word keeps its first character."""
    if not name:
        return name or ""
    if " " not in name:  # one word: most names, and every name part found in a message
        if len(name) == 1:
            return MASK if name.isalpha() else name
        return name[0] + MASK * (len(name) - 1)
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
    if phone[:1] == "+" and phone[1:].isdecimal():  # "+8613812345678": most phones, without the steps below
        cc = _country_code_of_start(phone[1:5])
        national = phone[1 + len(cc) :]
        if len(national) >= 8:
            return "+" + cc + national[:3] + MASK * (len(national) - 7) + national[-4:]
    raw = phone.strip()
    digits = _digits(raw)
    prefix, national = "", digits
    if raw.startswith("+"):
        cc = _country_code_of_start(digits[:4])  # country_code_of(digits)
        if cc:
            prefix, national = "+" + cc, digits[len(cc) :]
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
    The answer depends only on the first four digits, so it is worked out once per such start.
    """
    return _country_code_of_start(digits[:4])


@functools.lru_cache(maxsize=4096)
def _country_code_of_start(start: str) -> str:
    for size in (1, 2, 3):
        if len(start) > size and int(start[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return start[:size]
    return ""


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: the domain stays, the mailbox keeps one character."""
    if not email:
        return email or ""
    local, at, domain = email.partition("@")
    if not at:
        return mask_name(email)
    return (local[:1] or MASK) + MASK * 3 + "@" + domain


def _longest_first(values: Iterable[str]) -> tuple[str, ...]:
    """Distinct values, longest first (ties in a fixed order), the order in which they are replaced."""
    return tuple(sorted(sorted(set(values)), key=len, reverse=True))


@functools.lru_cache(maxsize=8192)
def _phone_variants(phone: str) -> tuple[str, ...]:
    """The spellings a known phone may take inside text: E.164, without the plus, the national number."""
    digits = _digits(phone)
    national = ""
    if phone.startswith("+"):
        cc = country_code_of(digits)
        if cc:
            national = digits[len(cc) :].lstrip("0") or digits[len(cc) :]
    if len(phone) > len(digits) > len(national) >= 5:  # "+8613812345678": already distinct, longest first
        return phone, digits, national
    return _longest_first(v for v in (phone, digits, national) if len(v) >= 5)


@functools.lru_cache(maxsize=8192)
def _name_parts(name: str) -> tuple[str, ...]:
    """Parts of a name that identify the person on their own inside a message (given name, family name)."""
    words = name.split()
    if len(name) >= 3 and _ALL_CJK_RE.fullmatch(name):
        return (name, name[1:])  # and the given name of a three-character Chinese name
    if len(words) == 1 and words[0] == name:  # one word, no spaces: "王小明12"
        return (name,) if name else ()
    parts = [name]
    parts.extend(w for w in words if len(w) >= 3)
    return _longest_first(p for p in parts if p)


@functools.lru_cache(maxsize=8192)
def _masked_phone_in_text(found: str) -> str:
    """A phone-like sequence found in text, masked; unchanged when it has too few digits to be a phone."""
    digits = _digits(found)
    international = found.startswith("+")
    if len(digits) < (MIN_INTERNATIONAL_DIGITS if international else MIN_PHONE_DIGITS):
        return found
    return mask_phone(("+" if international else "") + digits)


_EMAIL_LOCAL_CHARS = string.ascii_letters + string.digits + "._%+-"
_EMAIL_DOMAIN_RE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


# An address found in messages is mostly the lender's own, in every message: masked once.
_mask_found_email = functools.lru_cache(maxsize=1024)(mask_email)


def _mask_emails(text: str) -> str:
    """``EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text)``, found from each "@" rather than by trying
    EMAIL_RE (which starts with a look-behind) at every position.

    A match holds one "@": its mailbox is the whole run of mailbox characters before that "@" (the
    look-behind), its domain what EMAIL_RE's domain part matches after it. A run that starts inside the
    previous match's domain (``a@b.cn.x@c.cn``) is not a match, as with the regex."""
    at = text.find("@")
    if at < 0:
        return text
    parts: list[str] = []
    done = 0
    while at >= 0:
        start = done + len(text[done:at].rstrip(_EMAIL_LOCAL_CHARS))
        if start < at and (start > done or not parts):
            domain = _EMAIL_DOMAIN_RE.match(text, at + 1)
            if domain is not None:
                end = domain.end()
                parts.append(text[done:start])
                parts.append(_mask_found_email(text[start:end]))
                done = end
                at = text.find("@", end)
                continue
        at = text.find("@", at + 1)
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


# PHONE_RE with its look-behind moved after the first character, so that the regex engine can skip ahead to
# a "+", "(" or digit instead of trying the look-behind at every position: the same matches (group 0 here is
# PHONE_RE's group 1). "[+(\d]" is the first character of "\+?\(?\d"; the look-behind of two characters says
# the one before it is not a letter, digit, "_" or "+"; the branches finish "\+?\(?\d" after that character.
_PHONE_SCAN_RE = re.compile(
    r"[+(\d](?<![A-Za-z0-9_+].)(?:(?<=\+)\(?\d|(?<=\()\d|(?<=\d))[\d\- ()]{6,}\d(?![A-Za-z0-9_])"
)


def _mask_found_phone(match: re.Match) -> str:
    """The replacement of a ``_PHONE_SCAN_RE`` match."""
    return _masked_phone_in_text(match.group(0))


# What to look for in one customer's messages: (emails, phone spellings, name parts), each longest first.
Plan = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]


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
    return mask_text_with(text, _known_replacements(tuple(names), tuple(phones), tuple(emails)))


def mask_text_with(text: str, plan: Plan) -> str:
    """``mask_text`` with the known values already gathered (``_known_replacements``):
    known emails, then any email, then the known phone spellings, then any phone, then the name parts."""
    if not text:
        return text
    known_emails, known_phones, known_names = plan
    for old in known_emails:
        if old in text:
            text = text.replace(old, mask_email(old))
    if "@" in text:
        text = _mask_emails(text)
    for old in known_phones:
        if old in text:
            text = text.replace(old, mask_phone(old))
    text = _PHONE_SCAN_RE.sub(_mask_found_phone, text)
    for old in known_names:
        if old in text:
            text = text.replace(old, mask_name(old))
    return text


@functools.lru_cache(maxsize=8192)
def _known_replacements(names: tuple, phones: tuple, emails: tuple) -> Plan:
    """What to look for, longest first (gathered once per customer, not once per message)."""
    variants: list[str] = []
    for phone in phones:
        if phone:
            variants.extend(_phone_variants(phone))
    parts: list[str] = []
    for name in names:
        if name:
            parts.extend(_name_parts(name))
    return _longest_first(e for e in emails if e), _longest_first(variants), _longest_first(parts)


def mask_customer_text(text: str, name: str, phone: str, email: str) -> str:
    """``mask_text(text, names=(name,), phones=(phone,), emails=(email,))`` for one customer's message (an
    export's subject and body), looking up the phone's spellings only when the text may hold one of them."""
    if not text:
        return text
    if email and email in text:
        text = text.replace(email, mask_email(email))
    if "@" in text:
        text = _mask_emails(text)
    if phone:
        tail = phone[-5:]
        # Every spelling of a phone that ends in five digits ends in those digits.
        if len(tail) < 5 or not tail.isdecimal() or tail in text:
            for old in _phone_variants(phone):
                if old in text:
                    text = text.replace(old, mask_phone(old))
    text = _PHONE_SCAN_RE.sub(_mask_found_phone, text)
    if name and _name_may_appear(text, name):
        for old in _name_parts(name):
            if old in text:
                text = text.replace(old, mask_name(old))
    return text


def _name_may_appear(text: str, name: str) -> bool:
    """False when no part of ``name`` (``_name_parts``) is in ``text``: then they need not be worked out."""
    words = name.split()
    if len(words) == 1 and words[0] == name:
        # One word: its parts are the name and maybe a Chinese given name, both ending with name[1:].
        return (name[1:] or name) in text
    for word in words:
        if len(word) >= 3 and word in text:
            return True
    return name in text


_DESTINATION_PHONE_RE = re.compile(r"\+?[\d\- ()]{5,}")


def mask_destination(destination: str) -> str:
    """A contact's destination: an email, a phone number or a device token, masked as what it is."""
    if not destination:
        return destination or ""
    if "@" in destination:
        return mask_email(destination)
    if destination[:1] == "+" and len(destination) >= 6 and destination[1:].isdecimal():
        return mask_phone(destination)  # "+8613812345678", as the pattern below would say, sooner
    if _DESTINATION_PHONE_RE.fullmatch(destination.strip()):
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


@dataclass(frozen=True)
class Masker:
    """What one viewer is shown: every screen, export and preview masks through one of these.

    The decision is made once per request (``masker_for(request)``) or per export (``Masker(unmasked=...)``) and
    travels with it; it is never kept on a shared object such as a ModelAdmin, which serves every user's
    requests at the same time. Unmasked, every method returns its input unchanged."""

    unmasked: bool = False

    @classmethod
    def for_user(cls, user) -> Masker:
        return cls(unmasked=can_see_personal_data(user))

    def name(self, name: str) -> str:
        return name if self.unmasked else mask_name(name)

    def phone(self, phone: str) -> str:
        return phone if self.unmasked else mask_phone(phone)

    def email(self, email: str) -> str:
        return email if self.unmasked else mask_email(email)

    def destination(self, destination: str) -> str:
        return destination if self.unmasked else mask_destination(destination)

    def text(self, text: str, *, names=(), phones=(), emails=()) -> str:
        """Free text (a subject, a body, an error) quoting the known values and maybe other phones and emails."""
        return text if self.unmasked else mask_text(text, names=names, phones=phones, emails=emails)

    def message(self, text: str, *, names=(), phones=(), emails=()) -> str:
        """A message's subject or body: masked as ``text`` when the customer's name is known, withheld (only
        its length kept) when it is not, since a name is in words no pattern recognises."""
        if self.unmasked or not text:
            return text
        if not any(names):
            return withhold(text)
        return mask_text(text, names=names, phones=phones, emails=emails)

    def value(self, value, *, names=(), phones=(), emails=()):
        """A JSON value (audit before/after), see ``mask_value``."""
        return value if self.unmasked else mask_value(value, names=names, phones=phones, emails=emails)


def known_of(customer) -> dict[str, list[str]]:
    """The personal values of ``customer`` (or of anything with ``name``, ``phone``, ``email``) to look for in
    text, as keyword arguments of ``Masker.text``/``message``/``value``."""
    if customer is None:
        return {"names": [], "phones": [], "emails": []}
    return {
        "names": [customer.name or ""],
        "phones": [str(customer.phone or "")],
        "emails": [customer.email or ""],
    }


def masker_for(request) -> Masker:
    """The masker of this request (worked out once, kept on the request, which only this request sees)."""
    masker = getattr(request, "_personal_data_masker", None)
    if masker is None:
        masker = Masker.for_user(getattr(request, "user", None))
        request._personal_data_masker = masker
    return masker


__all__ = [
    "Masker",
    "can_see_personal_data",
    "known_of",
    "masker_for",
    "mask_destination",
    "mask_email",
    "mask_name",
    "mask_phone",
    "mask_text",
    "mask_text_with",
    "mask_value",
    "mask_customer_text",
]
