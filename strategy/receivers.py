"""A save of a tier, a reminder rule or a ladder step announces its tier's policy as changed
(``loans.policy_changes``); the announcement records the new versions (``strategy.versions``)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from debt_collection.models import EscalationStep
from loans.models import CreditTier
from loans.policy_changes import announce
from loans.signals import policy_saved
from notifications.models import ReminderRule

from .versions import record_versions


@receiver(post_save, sender=CreditTier, dispatch_uid="strategy.tier_saved")
@receiver(post_delete, sender=CreditTier, dispatch_uid="strategy.tier_deleted")
def tier_saved(sender, instance, **kwargs):
    announce([instance.pk])


@receiver(post_save, sender=ReminderRule, dispatch_uid="strategy.rule_saved")
@receiver(post_delete, sender=ReminderRule, dispatch_uid="strategy.rule_deleted")
@receiver(post_save, sender=EscalationStep, dispatch_uid="strategy.step_saved")
@receiver(post_delete, sender=EscalationStep, dispatch_uid="strategy.step_deleted")
def rule_or_step_saved(sender, instance, **kwargs):
    announce([instance.tier_id])


@receiver(policy_saved, dispatch_uid="strategy.record_versions")
def record_saved_versions(sender, tier_ids, actor, reason, at, **kwargs):
    record_versions(at=at, actor=actor, reason=reason, tier_ids=tier_ids)
