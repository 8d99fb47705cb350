"""Policy versions: a tier's reminder rules, ladder, grace period and contact limits as they stood when a change
was saved, with who saved it, when and why. The loan book holds them so every layer above can name the version a
contact, case or call task was decided under; the strategy app records, compares and promotes them."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .tiers import CreditTier


class PolicyVersionQuerySet(models.QuerySet):
    def saved(self):
        """Versions of the tier's saved policy (the champion's history), not proposals run as challengers."""
        return self.filter(is_proposal=False)

    def latest_ids(self, tier_ids=None) -> dict[int, int]:
        """The current (newest saved) version's id of each tier (of ``tier_ids`` when given), one query."""
        rows = self.saved()
        if tier_ids is not None:
            rows = rows.filter(tier_id__in=list(tier_ids))
        newest: dict[int, int] = {}
        for tier_id, id_ in rows.order_by("tier_id", "-number").values_list("tier_id", "id"):
            newest.setdefault(tier_id, id_)
        return newest

    def newest_of_tier(self, tier_ref) -> models.Subquery:
        """The current version's id of the tier ``tier_ref`` names (an ``OuterRef``), for an annotation."""
        return models.Subquery(self.saved().filter(tier=tier_ref).order_by("-number").values("id")[:1])


class PolicyVersion(models.Model):
    """One saved state of a tier's policy. Never edited: a change of the tier, its rules or its ladder makes the
    next version; a proposal run as a challenger is a version too (``is_proposal``). ``rules`` and ``ladder`` are plain lists (see ``strategy.policy.Policy``): a rule is
    ``[offset_days, channel, kind, "HH:MM"]``, a ladder step ``{"min_dpd", "action", "stage", "kind", "step_id"}``
    (``step_id`` the ladder row it was read from, which a later version may have deleted)."""

    tier = models.ForeignKey(
        CreditTier, on_delete=models.CASCADE, related_name="policy_versions", verbose_name=_("tier")
    )
    number = models.PositiveIntegerField(_("version"))
    grace_period_days = models.PositiveSmallIntegerField(_("grace period (days)"))
    max_contacts_per_week = models.PositiveSmallIntegerField(_("max contacts per customer in any 7 days"))
    channel_order = models.CharField(_("channel order"), max_length=64)
    rules = models.JSONField(_("reminder rules"), default=list)
    ladder = models.JSONField(_("escalation ladder"), default=list)
    created_at = models.DateTimeField(_("saved at"))
    created_by = models.CharField(_("saved by"), max_length=150)
    reason = models.CharField(_("why"), max_length=300, blank=True)
    # A proposal (run as a challenger) is a version never saved as the tier's policy: numbered in the same
    # sequence, it is not the tier's current version until promoted.
    is_proposal = models.BooleanField(_("proposal"), default=False)

    objects = PolicyVersionQuerySet.as_manager()

    class Meta:
        ordering = ["tier", "-number"]
        verbose_name = _("policy version")
        verbose_name_plural = _("policy versions")
        constraints = [
            models.UniqueConstraint(fields=["tier", "number"], name="policy_version_unique_per_tier"),
        ]

    def __str__(self):
        return self.label_for(self.tier_id and self.tier.code, self.number)

    @staticmethod
    def label_for(tier_code: str, number: int) -> str:
        """How a version reads everywhere: ``A v3``."""
        return f"{tier_code} v{number}"

    @property
    def channels(self) -> list[str]:
        return [c.strip() for c in self.channel_order.split(",") if c.strip()]
