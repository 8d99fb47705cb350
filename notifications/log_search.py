"""What the notification log's search box finds, and what an export of a searched log holds: the contacts of a
customer, or those about a loan, by reference.

A reference is matched as typed and upper-cased ("c000123" finds C000123), so the unique indexes on the
references serve the search. The references are resolved first, to the customer's id and to the contacts that
listed the loan's instalments, and the log is then filtered by those ids: PostgreSQL reads them through the
customer's indexes and the primary key. Filtered by a join to the customers or a subquery of the items instead,
it walked the changelist's index over every monthly partition and tested each row (3.5-10 s for a customer
with a few contacts in a 200,000-row log). A substring of the log's ``loan_refs`` text would read every row too.
"""

from __future__ import annotations

from django.db.models import Q

from loans.models import Customer

from .models import NotificationItem


def log_search_q(term: str) -> Q:
    """The contacts of the customer whose reference is ``term``, or that covered an instalment of the loan
    whose reference it is (an empty ``term`` matches everything). Reads the ids it filters by (two small
    queries), so the filter holds what the references named when it was built."""
    term = term.strip()
    if not term:
        return Q()
    refs = sorted({term, term.upper()})
    customers = list(Customer.objects.filter(ref__in=refs).values_list("pk", flat=True))
    about_loan = sorted(
        set(
            NotificationItem.objects.filter(installment__loan__ref__in=refs).values_list(
                "notification_id", flat=True
            )
        )
    )
    return Q(customer_id__in=customers) | Q(pk__in=about_loan)
