"""The forms of the collector's day: recording a call, and a team lead's reassignment."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ..assignment import collectors
from ..models import CallTask


class CallOutcomeForm(forms.Form):
    outcome = forms.ChoiceField(choices=[c for c in CallTask.Outcome.choices if c[0]], label=_("Outcome"))
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label=_("Note"))
    promise_amount = forms.DecimalField(
        max_digits=14, decimal_places=2, required=False, label=_("Promised amount")
    )
    promise_date = forms.DateField(
        required=False, label=_("Promised date"), widget=forms.DateInput(attrs={"type": "date"})
    )
    covers = forms.MultipleChoiceField(
        required=False,
        label=_("Also about loans"),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The customer's other loans the call was about."),
    )

    def __init__(self, *args, other_loans=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["covers"].choices = [(loan.ref, loan.ref) for loan in other_loans]
        if not other_loans:
            del self.fields["covers"]


class ReassignForm(forms.Form):
    collector = forms.ModelChoiceField(queryset=collectors(), label=_("Collector"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["collector"].queryset = collectors()
        self.fields["collector"].label_from_instance = lambda u: u.get_full_name() or u.get_username()
