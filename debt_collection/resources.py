"""Import of the escalation ladder: ``tier_code, min_dpd, stage, action, kind`` (SPEC.md)."""

from __future__ import annotations

from import_export import fields

from core.imports.resource import BookResource
from core.imports.widgets import IntWidget, RefWidget, TextWidget
from loans.models import CreditTier
from loans.policy_changes import PolicyImportMixin

from .models import EscalationStep


class EscalationStepResource(PolicyImportMixin, BookResource):
    tier = fields.Field(
        attribute="tier",
        column_name="tier_code",
        widget=RefWidget(CreditTier, field="code", label="credit tier"),
    )
    min_dpd = fields.Field(attribute="min_dpd", column_name="min_dpd", widget=IntWidget())
    stage = fields.Field(attribute="stage", column_name="stage", widget=TextWidget())
    action = fields.Field(attribute="action", column_name="action", widget=TextWidget())
    kind = fields.Field(attribute="kind", column_name="kind", widget=TextWidget())

    # Configuration: each object the file creates or changes is audited with before and after.
    audit_each_object = True

    class Meta:
        model = EscalationStep
        fields = ("tier", "min_dpd", "stage", "action", "kind")
        import_id_fields = ("tier", "min_dpd", "action")
        export_order = ("tier", "min_dpd", "stage", "action", "kind")
