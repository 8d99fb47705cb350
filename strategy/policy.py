"""A tier's contact and collections policy as plain values (``Policy.of(tier)``), the operator's proposed change
of it (parsed from the preview form's lines), and writing a policy over the tier's saved one (the preview does
that inside its rolled-back transaction)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from debt_collection.models import EscalationStep
from loans.models import CreditTier
from loans.models.tiers import validate_channel_order
from loans.policy_changes import announce
from notifications.choices import Channel, Kind
from notifications.models import ReminderRule

MESSAGING = (Channel.SMS.value, Channel.EMAIL.value, Channel.PUSH.value)
DEFAULT_STEP_KIND = Kind.OVERDUE.value


# --- a policy and a proposal ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleSpec:
    offset_days: int
    channel: str
    kind: str
    send_time: dt.time


@dataclass(frozen=True)
class StepSpec:
    min_dpd: int
    action: str
    stage: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Policy:
    """What decides a tier's contacts and escalations; ``Policy.of(tier)`` is the saved one."""

    grace_period_days: int
    max_contacts_per_week: int
    channel_order: tuple[str, ...]
    rules: tuple[RuleSpec, ...]
    ladder: tuple[StepSpec, ...]

    @classmethod
    def of(cls, tier: CreditTier) -> Policy:
        """The tier's saved policy (2 queries: its active rules and its ladder)."""
        rules = tuple(
            RuleSpec(r.offset_days, r.channel, r.kind, r.send_time)
            for r in ReminderRule.objects.filter(tier=tier, is_active=True).order_by(
                "offset_days", "channel", "kind", "id"
            )
        )
        ladder = tuple(
            StepSpec(s.min_dpd, s.action, s.stage, s.kind)
            for s in EscalationStep.objects.filter(tier=tier).order_by("min_dpd", "action", "id")
        )
        return cls(
            grace_period_days=tier.grace_period_days,
            max_contacts_per_week=tier.max_contacts_per_week,
            channel_order=tuple(tier.channels),
            rules=rules,
            ladder=ladder,
        )

    def changed(self, **changes) -> Policy:
        """A copy with the given fields replaced (None keeps the current value). A ladder step without a template
        kind keeps the kind of the saved step it replaces (``overdue`` for a new messaging step)."""
        policy = replace(self, **{k: v for k, v in changes.items() if v is not None})
        kinds = {(s.min_dpd, s.action): s.kind for s in self.ladder}
        ladder = tuple(
            s
            if s.kind or s.action not in MESSAGING
            else replace(s, kind=kinds.get((s.min_dpd, s.action)) or DEFAULT_STEP_KIND)
            for s in policy.ladder
        )
        return replace(policy, ladder=ladder)


def write_policy(tier: CreditTier, policy: Policy) -> None:
    """Write ``policy`` over the tier's saved one, as an operator editing the tier, its rules and its ladder would:
    a rule or step that stays (same offset, channel and kind; same DPD and action) keeps its row, so the steps a
    case already performed stay performed. Called inside the preview's rolled-back transaction and by the
    promotion of a challenger; the tier's next version is recorded (``loans.policy_changes``)."""
    CreditTier.objects.filter(pk=tier.pk).update(
        grace_period_days=policy.grace_period_days,
        max_contacts_per_week=policy.max_contacts_per_week,
        channel_order=",".join(policy.channel_order),
    )
    wanted_rules = {(r.offset_days, r.channel, r.kind): r for r in policy.rules}
    saved_rules = {(r.offset_days, r.channel, r.kind): r for r in ReminderRule.objects.filter(tier=tier)}
    ReminderRule.objects.filter(
        pk__in=[r.pk for k, r in saved_rules.items() if k not in wanted_rules]
    ).update(is_active=False)
    for key, spec in wanted_rules.items():
        row = saved_rules.get(key)
        if row is None:
            ReminderRule.objects.create(
                tier=tier,
                offset_days=spec.offset_days,
                channel=spec.channel,
                kind=spec.kind,
                send_time=spec.send_time,
            )
        elif (row.send_time, row.is_active) != (spec.send_time, True):
            ReminderRule.objects.filter(pk=row.pk).update(send_time=spec.send_time, is_active=True)
    wanted_steps = {(s.min_dpd, s.action): s for s in policy.ladder}
    saved_steps = {(s.min_dpd, s.action): s for s in EscalationStep.objects.filter(tier=tier)}
    EscalationStep.objects.filter(
        pk__in=[s.pk for k, s in saved_steps.items() if k not in wanted_steps]
    ).delete()
    for key, spec in wanted_steps.items():
        row = saved_steps.get(key)
        if row is None:
            EscalationStep.objects.create(
                tier=tier, min_dpd=spec.min_dpd, action=spec.action, stage=spec.stage, kind=spec.kind
            )
        elif (row.stage, row.kind) != (spec.stage, spec.kind):
            EscalationStep.objects.filter(pk=row.pk).update(stage=spec.stage, kind=spec.kind)
    # Rows updated in bulk send no save signal: the tier's policy is announced as saved once, here (inside the
    # caller's ``policy_change``, one version).
    announce([tier.pk])


# --- parsing the operator's proposal ---------------------------------------------------------------------
def parse_rules(text: str) -> tuple[RuleSpec, ...]:
    """Lines ``offset,channel,kind,HH:MM`` (e.g. ``-3,sms,pre_due,10:00``). Raises ValidationError naming
    the line."""
    rules = []
    for number, line in _lines(text):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            raise ValidationError(_("Rule line %(n)s: write offset,channel,kind,HH:MM.") % {"n": number})
        offset, channel, kind, at = parts
        try:
            offset_days = int(offset)
            send_time = dt.time.fromisoformat(at)
        except ValueError as exc:
            raise ValidationError(_("Rule line %(n)s: %(error)s") % {"n": number, "error": exc}) from exc
        if channel not in MESSAGING:
            raise ValidationError(
                _("Rule line %(n)s: unknown channel “%(v)s”.") % {"n": number, "v": channel}
            )
        if kind not in Kind.values:
            raise ValidationError(_("Rule line %(n)s: unknown kind “%(v)s”.") % {"n": number, "v": kind})
        if not -60 <= offset_days <= 60:
            raise ValidationError(_("Rule line %(n)s: the offset must lie within 60 days.") % {"n": number})
        rules.append(RuleSpec(offset_days, channel, kind, send_time))
    keys = [(r.offset_days, r.channel, r.kind) for r in rules]
    if len(set(keys)) != len(keys):
        raise ValidationError(_("Two rules have the same offset, channel and kind."))
    return tuple(rules)


def parse_ladder(text: str) -> tuple[StepSpec, ...]:
    """Lines ``min_dpd,action[,stage[,kind]]`` (e.g. ``15,call_task,call``, ``5,sms,early,overdue``). Raises
    ValidationError naming the line."""
    steps = []
    actions = EscalationStep.Action.values
    for number, line in _lines(text):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) not in (2, 3, 4):
            raise ValidationError(
                _("Ladder line %(n)s: write min_dpd,action[,stage[,kind]].") % {"n": number}
            )
        try:
            min_dpd = int(parts[0])
        except ValueError as exc:
            raise ValidationError(_("Ladder line %(n)s: %(error)s") % {"n": number, "error": exc}) from exc
        if min_dpd < 1 or parts[1] not in actions:
            raise ValidationError(
                _("Ladder line %(n)s: DPD from 1, action one of %(a)s.")
                % {"n": number, "a": ", ".join(actions)}
            )
        kind = parts[3] if len(parts) == 4 else ""
        if kind and kind not in Kind.values:
            raise ValidationError(_("Ladder line %(n)s: unknown kind “%(v)s”.") % {"n": number, "v": kind})
        steps.append(StepSpec(min_dpd, parts[1], parts[2] if len(parts) >= 3 else "", kind))
    keys = [(s.min_dpd, s.action) for s in steps]
    if len(set(keys)) != len(keys):
        raise ValidationError(_("Two ladder steps have the same DPD and action."))
    return tuple(steps)


def parse_channel_order(text: str) -> tuple[str, ...]:
    """``sms,push,email``: the tier's channel order. Raises ValidationError as the tier's own field does."""
    validate_channel_order(text)
    return tuple(c.strip() for c in text.split(",") if c.strip())


def format_rules(rules: tuple[RuleSpec, ...]) -> str:
    return "\n".join(f"{r.offset_days},{r.channel},{r.kind},{r.send_time:%H:%M}" for r in rules)


def format_ladder(ladder: tuple[StepSpec, ...]) -> str:
    return "\n".join(",".join([str(s.min_dpd), s.action, s.stage, s.kind]).rstrip(",") for s in ladder)


def _lines(text: str):
    for number, line in enumerate((text or "").splitlines(), start=1):
        if line.strip() and not line.strip().startswith("#"):
            yield number, line.strip()
