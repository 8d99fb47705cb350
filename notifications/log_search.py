"""What the notification log's search box finds, and what an export of a searched log holds: the contacts of a
customer, or those about a loan, by reference.

A reference is matched as typed and upper-cased ("c000123" finds C000123), so the unique indexes on the
references serve the search; the contacts are then read by their customer index, or through the items of the
loan's instalments. A substring of the log's ``loan_refs`` text would read every row of a log of millions.
"""

from __future__ import annotations

from django.db.models import Q

from .models import NotificationItem


def log_search_q(term: str) -> Q:
    """The contacts of the customer whose reference is ``term``, or that covered an instalment of the loan
    whose reference it is (an empty ``term`` matches everything)."""
    term = term.strip()
    if not term:
        return Q()
    refs = sorted({term, term.upper()})
    about_loan = NotificationItem.objects.filter(installment__loan__ref__in=refs).values("notification_id")
    return Q(customer__ref__in=refs) | Q(pk__in=about_loan)
