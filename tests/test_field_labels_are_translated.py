"""Every field an operator reads in the admin (lists, forms, filters) has a translatable label: a field without
one is labelled by Django from its name, in English whatever the language."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.utils.functional import Promise

# Machinery no page shows: claim and deduplication keys, and the parked delivery receipts' columns.
NOT_SHOWN = {
    ("notifications", "NotificationLog", "idempotency_key"),
    ("notifications", "NotificationLog", "dedupe_key"),
    ("notifications", "NotificationLog", "claimed_until"),
    ("notifications", "ContactPolicy", "id"),
}
NOT_SHOWN_MODELS = {("notifications", "ParkedReceipt"), ("collections", "CallAttemptLoan")}


@pytest.mark.parametrize("label", ["loans", "notifications", "collections"])
def test_every_field_of_the_product_has_a_translatable_label(label):
    unlabelled = []
    for model in apps.get_app_config(label).get_models():
        if (label, model.__name__) in NOT_SHOWN_MODELS:
            continue
        for field in model._meta.get_fields():
            if not getattr(field, "concrete", False) or field.auto_created:
                continue
            if (label, model.__name__, field.name) in NOT_SHOWN:
                continue
            if not isinstance(field.verbose_name, Promise):
                unlabelled.append(f"{model.__name__}.{field.name}")
    assert unlabelled == []
