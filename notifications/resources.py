"""Import files of the reminder engine (SPEC.md "Import files"), keyed by the first columns.

A template with an unknown or malformed placeholder is an error of its row (the model's validation), and like
any bad row it fails the whole file.
"""

from __future__ import annotations

from import_export.fields import Field

from core.imports.resource import BookResource
from core.imports.widgets import IntWidget, LocalTimeWidget, RefWidget, TextWidget
from loans.models import CreditTier
from loans.policy_changes import PolicyImportMixin

from .models import ReminderRule, ReminderTemplate


def text(column: str, **kwargs) -> Field:
    return Field(attribute=column, column_name=column, widget=TextWidget(), **kwargs)


class ReminderTemplateResource(BookResource):
    kind = text("kind")
    channel = text("channel")
    language = text("language")
    subject = text("subject")
    body = Field(attribute="body", column_name="body", widget=TextWidget())

    # Configuration: each object the file creates or changes is audited with before and after.
    audit_each_object = True

    class Meta:
        model = ReminderTemplate
        fields = ("kind", "channel", "language", "subject", "body")
        import_id_fields = ("kind", "channel", "language")


class ReminderRuleResource(PolicyImportMixin, BookResource):
    tier = Field(
        attribute="tier",
        column_name="tier_code",
        widget=RefWidget(CreditTier, field="code", label="credit tier"),
    )
    offset_days = Field(attribute="offset_days", column_name="offset_days", widget=IntWidget())
    channel = text("channel")
    kind = text("kind")
    send_time = Field(attribute="send_time", column_name="send_time", widget=LocalTimeWidget())

    # Configuration: each object the file creates or changes is audited with before and after.
    audit_each_object = True

    class Meta:
        model = ReminderRule
        fields = ("tier", "offset_days", "channel", "kind", "send_time")
        import_id_fields = ("tier", "offset_days", "channel", "kind")
