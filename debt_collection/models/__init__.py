"""Collections' models by concern: the ladder (``ladder``), cases and the steps they ran (``cases``), call tasks
and calls made (``calls``), promises to pay (``promises``), agencies and legal referrals (``handovers``)."""

from .calls import CallAttempt, CallAttemptLoan, CallTask, CallTaskQuerySet
from .cases import CaseStepRun, CollectionCase, CollectionCaseQuerySet, frozen_loan_ids, past_due_between_q
from .handovers import Agency, AgencyPlacement, LegalReferral
from .ladder import MESSAGING_ACTIONS, EscalationStep
from .promises import PromiseToPay

__all__ = [
    "MESSAGING_ACTIONS",
    "Agency",
    "AgencyPlacement",
    "CallAttempt",
    "CallAttemptLoan",
    "CallTask",
    "CallTaskQuerySet",
    "CaseStepRun",
    "CollectionCase",
    "CollectionCaseQuerySet",
    "EscalationStep",
    "LegalReferral",
    "PromiseToPay",
    "frozen_loan_ids",
    "past_due_between_q",
]
