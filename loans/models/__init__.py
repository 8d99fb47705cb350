"""The loan book: credit tiers, customers, credit scores, loans, instalments, payments, auto-debit attempts.

One module per concern; Django and every caller find the models here."""

from .customers import CreditScore, Customer
from .experiments import Arm, PolicyAssignment, PolicyExperiment
from .loans import Installment, Loan
from .payments import AutoDebitAttempt, Payment, PaymentAllocation
from .policies import PolicyVersion
from .tiers import CreditTier

__all__ = [
    "Arm",
    "AutoDebitAttempt",
    "CreditScore",
    "CreditTier",
    "Customer",
    "Installment",
    "Loan",
    "Payment",
    "PaymentAllocation",
    "PolicyAssignment",
    "PolicyExperiment",
    "PolicyVersion",
]
