"""Admin forms of the loan book that speak in references, not internal ids."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Installment, Loan, Payment


class PaymentForm(forms.ModelForm):
    """A payment is entered by the loan's reference and, optionally, the number of the instalment where its
    allocation starts (the waterfall pays the oldest unpaid instalment first otherwise)."""

    loan_ref = forms.CharField(
        label=_("loan reference"),
        max_length=32,
        help_text=_("The loan's reference, e.g. L2000123."),
    )
    installment_seq = forms.IntegerField(
        label=_("start at instalment no."),
        required=False,
        min_value=1,
        help_text=_(
            "Empty: the oldest unpaid instalment first. The rest goes on to the next unpaid instalments, "
            "oldest first; what is left after the loan's balance is kept as the loan's credit."
        ),
    )

    class Meta:
        model = Payment
        fields = ("ref", "loan_ref", "installment_seq", "amount", "received_at", "source")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["loan_ref"].initial = self.instance.loan.ref
            if self.instance.installment_id:
                self.fields["installment_seq"].initial = self.instance.installment.seq

    def clean(self):
        cleaned = super().clean()
        ref = (cleaned.get("loan_ref") or "").strip()
        if not ref:
            return cleaned
        loan = Loan.objects.filter(ref=ref).first()
        if loan is None:
            self.add_error("loan_ref", _("No loan has the reference “%(ref)s”.") % {"ref": ref})
            return cleaned
        seq = cleaned.get("installment_seq")
        installment = None
        if seq is not None:
            installment = Installment.objects.filter(loan=loan, seq=seq).first()
            if installment is None:
                self.add_error(
                    "installment_seq",
                    _("Loan %(ref)s has no instalment %(seq)s.") % {"ref": ref, "seq": seq},
                )
                return cleaned
        elif not loan.installments.exists():
            self.add_error("loan_ref", _("This loan has no instalment to pay."))
            return cleaned
        self.instance.loan, self.instance.installment = loan, installment
        return cleaned
