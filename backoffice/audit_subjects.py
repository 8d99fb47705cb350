"""The audit trail's subjects the project knows: a customer by reference, and everything recorded about them.

Registered with core's audit search (``core.audit_search``) when the back office is ready: searching the
audit trail (or exporting it with ``q``) for ``C000123`` finds the events about that customer's record, loans,
instalments, payments, messages, collections cases, call tasks and promises. One query per kind of object,
each served by an index on the customer or the loan; a reference that names no customer costs one query.
"""

from __future__ import annotations

from django.db.models import QuerySet

from debt_collection.models import CallTask, CollectionCase, PromiseToPay
from loans.models import Customer, Installment, Loan, Payment
from notifications.models import NotificationLog


def _ids(qs: QuerySet) -> list[str]:
    return [str(pk) for pk in qs.values_list("pk", flat=True)]


def customer_subjects(term: str) -> dict[str, list[str]]:
    """``{object_type: [object_id]}`` of everything about the customer whose reference is ``term`` (as typed
    or upper-cased); empty when it names no customer."""
    customer_ids = _ids(Customer.objects.filter(ref__in=sorted({term, term.upper()})))
    if not customer_ids:
        return {}
    loans = Loan.objects.filter(customer_id__in=customer_ids)
    return {
        Customer._meta.label: customer_ids,
        Loan._meta.label: _ids(loans),
        Installment._meta.label: _ids(Installment.objects.filter(loan__in=loans)),
        Payment._meta.label: _ids(Payment.objects.filter(loan__in=loans)),
        NotificationLog._meta.label: _ids(NotificationLog.objects.filter(customer_id__in=customer_ids)),
        CollectionCase._meta.label: _ids(CollectionCase.objects.filter(loan__in=loans)),
        CallTask._meta.label: _ids(CallTask.objects.filter(case__loan__in=loans)),
        PromiseToPay._meta.label: _ids(PromiseToPay.objects.filter(case__loan__in=loans)),
    }
