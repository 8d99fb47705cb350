"""Finding a customer from what an operator has at hand: a reference, part of a phone number in any format, a
name or an email address.

Phones are stored in E.164 (``+8613800138000``): a "+" and digits. So the digits an operator types, in whatever
format ("138 0013", "+86 138-0013-8000", "(0)138..."), are a substring of the stored value once everything but
the digits is dropped, and ``phone LIKE '%<digits>%'`` finds them without a second, "normalized" column that
every bulk write (imports, fast paths) would have to keep in step. On PostgreSQL a trigram GIN index on the
phone (migration ``customer_search_indexes`` of the loan book) serves that LIKE, and the upper-cased name and email
the same way, so a search over millions of customers reads the index, not the table; SQLite (the embedded mode,
small books) scans. A national number typed with its trunk prefix ("0138...", "07911...") is also looked for
without it, since E.164 drops it.

Searching by personal data is for users who may see it: without ``loans.view_personal_data`` only the
reference is matched (a search for a name or a phone would say whose a masked row is).
"""

from __future__ import annotations

import re

from django.db.models import Q

# Digits, spaces and the punctuation phone numbers are written with: such a term is a phone number.
PHONE_TERM_RE = re.compile(r"^\+?[\d\s().\-/]+$")
# Fewer digits than this match too many numbers to mean anything (and a trigram index needs at least three).
MIN_PHONE_DIGITS = 4


def phone_digits(term: str) -> list[str]:
    """The digit strings to look for in stored phones for ``term`` (none when it is not a phone number)."""
    term = term.strip()
    if not PHONE_TERM_RE.match(term):
        return []
    digits = re.sub(r"\D", "", term)
    if len(digits) < MIN_PHONE_DIGITS:
        return []
    found = [digits]
    national = digits.lstrip("0")
    if national != digits and len(national) >= MIN_PHONE_DIGITS:
        found.append(national)
    return found


def customer_search_q(term: str, *, personal: bool, prefix: str = "") -> Q:
    """A filter for the customers ``term`` names: their reference; with ``personal``, also
    part of their phone number, name or email. ``prefix`` is the path to the customer (``"customer__"``)."""
    term = term.strip()
    if not term:
        return Q()
    # References are matched exactly as typed or upper-cased ("c000123" finds C000123): the unique index on the
    # reference serves both, where a case-insensitive comparison would read the whole table.
    q = Q(**{f"{prefix}ref__in": sorted({term, term.upper()})})
    if not personal:
        return q
    digits = phone_digits(term)
    for part in digits:
        q |= Q(**{f"{prefix}phone__contains": part})
    if not digits:
        q |= Q(**{f"{prefix}name__icontains": term}) | Q(**{f"{prefix}email__icontains": term})
    return q
