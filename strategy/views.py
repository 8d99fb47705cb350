"""The policy preview page on a tier (under /admin/, see the project's operator URLs): the proposal form, prefilled
with the saved policy, and when run the current and proposed figures side by side, per day, and the loans whose
outcome changes. The figures come from ``strategy.preview``: the real engine over a sample, rolled back. Its
replay mode shows what actually happened over the last days beside the replay of those days under the proposal
or a saved version (``strategy.replay``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from debt_collection.models import CallTask, EscalationStep
from loans.models import CreditTier, PolicyVersion
from notifications.choices import Channel
from notifications.models import NotificationLog

from .policy import Policy, format_ladder, format_rules, parse_channel_order, parse_ladder, parse_rules
from .preview import DEFAULT_SAMPLE, MAX_SAMPLE, Outcome, preview_policy
from .replay import DEFAULT_REPLAY_DAYS, MAX_REPLAY_DAYS, replay_policy

PREVIEW_PERMISSION = "loans.view_credittier"
CHANGED_LOANS_SHOWN = 50
Reason = NotificationLog.Reason


class PreviewForm(forms.Form):
    start = forms.DateField(label=gettext_lazy("from"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=gettext_lazy("to"), widget=forms.DateInput(attrs={"type": "date"}))
    sample_size = forms.IntegerField(
        label=gettext_lazy("customers in the sample"),
        min_value=1,
        max_value=MAX_SAMPLE,
        initial=DEFAULT_SAMPLE,
        help_text=gettext_lazy("The tier's first customers with an active loan; fewer run faster."),
    )
    grace_period_days = forms.IntegerField(
        label=gettext_lazy("grace period (days)"), min_value=0, max_value=14
    )
    max_contacts_per_week = forms.IntegerField(
        label=gettext_lazy("max contacts per customer in any 7 days"), min_value=1
    )
    channel_order = forms.CharField(label=gettext_lazy("channel order"))
    rules = forms.CharField(
        label=gettext_lazy("reminder rules"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 40}),
        help_text=gettext_lazy("One per line: offset,channel,kind,HH:MM"),
    )
    ladder = forms.CharField(
        label=gettext_lazy("escalation steps"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 40}),
        help_text=gettext_lazy("One per line: min_dpd,action[,stage[,template kind]]"),
    )

    replay_days = forms.IntegerField(
        label=gettext_lazy("days to replay"),
        min_value=1,
        max_value=MAX_REPLAY_DAYS,
        initial=DEFAULT_REPLAY_DAYS,
        required=False,
        help_text=gettext_lazy("Replay mode: the last days, to yesterday."),
    )
    version = forms.ModelChoiceField(
        label=gettext_lazy("replay a saved version"),
        queryset=PolicyVersion.objects.none(),
        required=False,
        empty_label=gettext_lazy("no: the policy above"),
    )

    def __init__(self, *args, tier: CreditTier, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = PolicyVersion.objects.filter(tier=tier).order_by("-number")
        self.fields["version"].label_from_instance = lambda v: (
            _("version %(n)s of %(at)s")
            % {
                "n": v.number,
                "at": timezone.localtime(v.created_at).strftime("%Y-%m-%d %H:%M"),
            }
        )

    def clean_channel_order(self):
        return parse_channel_order(self.cleaned_data["channel_order"])

    def clean_rules(self):
        return parse_rules(self.cleaned_data["rules"])

    def clean_ladder(self):
        return parse_ladder(self.cleaned_data["ladder"])


def comparison_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The table of the page: one row per figure, current and proposed side by side with the change."""
    current: Outcome = result["current"]
    proposed: Outcome = result["proposed"]
    rows = [{"label": _("Sent"), "current": current.sent, "proposed": proposed.sent, "strong": True}]
    for channel in sorted(set(current.sent_by_channel) | set(proposed.sent_by_channel)):
        rows.append(
            {
                "label": "· " + str(Channel(channel).label),
                "current": current.sent_by_channel[channel],
                "proposed": proposed.sent_by_channel[channel],
            }
        )
    rows.append(
        {
            "label": _("Held back"),
            "current": sum(current.held_back.values()),
            "proposed": sum(proposed.held_back.values()),
            "strong": True,
        }
    )
    for status, reason in sorted(set(current.held_back) | set(proposed.held_back)):
        rows.append(
            {
                "label": f"· {NotificationLog.Status(status).label}: {Reason(reason).label}",
                "code": reason,
                "current": current.held_back[(status, reason)],
                "proposed": proposed.held_back[(status, reason)],
            }
        )
    rows.append(
        {
            "label": _("Escalations"),
            "current": sum(current.escalations.values()),
            "proposed": sum(proposed.escalations.values()),
            "strong": True,
        }
    )
    actions = dict(EscalationStep.Action.choices)
    for action in sorted(set(current.escalations) | set(proposed.escalations)):
        rows.append(
            {
                "label": "· " + str(actions.get(action, action)),
                "code": action,
                "current": current.escalations[action],
                "proposed": proposed.escalations[action],
            }
        )
    if current.call_tasks or proposed.call_tasks or current.calls or proposed.calls:
        rows.append(
            {
                "label": _("Call tasks opened"),
                "code": "call_tasks",
                "current": current.call_tasks,
                "proposed": proposed.call_tasks,
                "strong": True,
            }
        )
        rows.append(
            {
                "label": _("Calls made"),
                "code": "calls",
                "current": sum(current.calls.values()),
                "proposed": sum(proposed.calls.values()),
                "strong": True,
            }
        )
        for call_outcome in sorted(set(current.calls) | set(proposed.calls)):
            rows.append(
                {
                    "label": "· " + str(CallTask.Outcome(call_outcome).label),
                    "code": f"call:{call_outcome}",
                    "current": current.calls[call_outcome],
                    "proposed": proposed.calls[call_outcome],
                }
            )
    for row in rows:
        row["delta"] = row["proposed"] - row["current"]
    return rows


def day_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per local day: sent, held back and escalations under each policy."""
    current: Outcome = result["current"]
    proposed: Outcome = result["proposed"]
    return [
        {"day": day, "current": current.per_day[day], "proposed": proposed.per_day.get(day, {})}
        for day in current.per_day
    ]


def outcome_label(figures: dict[str, int]) -> str:
    """A loan's outcome in a few words, by code: ``sent ×2, suppressed: frequency_cap ×1, escalation: sms ×1``."""
    return ", ".join(f"{key.replace(':', ': ')} ×{n}" for key, n in figures.items()) or "—"


def tier_preview_view(request: HttpRequest, tier_id: int) -> HttpResponse:
    """GET form on a tier: the proposal (prefilled with the saved policy) and, when run, the comparison."""
    if not request.user.has_perm(PREVIEW_PERMISSION):
        raise PermissionDenied
    tier = get_object_or_404(CreditTier, pk=tier_id)
    current = Policy.of(tier)
    today = timezone.localdate()
    initial = {
        "start": today,
        "end": today + dt.timedelta(days=13),
        "sample_size": DEFAULT_SAMPLE,
        "grace_period_days": current.grace_period_days,
        "max_contacts_per_week": current.max_contacts_per_week,
        "channel_order": ",".join(current.channel_order),
        "rules": format_rules(current.rules),
        "ladder": format_ladder(current.ladder),
    }
    initial["replay_days"] = DEFAULT_REPLAY_DAYS
    form = PreviewForm(request.GET if "run" in request.GET else None, initial=initial, tier=tier)
    is_replay = request.GET.get("mode") == "replay"
    result = rows = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        proposal = {
            "grace_period_days": data["grace_period_days"],
            "max_contacts_per_week": data["max_contacts_per_week"],
            "channel_order": data["channel_order"],
            "rules": data["rules"],
            "ladder": data["ladder"],
        }
        try:
            if is_replay:
                result = replay_policy(
                    tier,
                    today=today,
                    days=data["replay_days"] or DEFAULT_REPLAY_DAYS,
                    sample_size=data["sample_size"],
                    version=data["version"],
                    **({} if data["version"] else proposal),
                )
            else:
                result = preview_policy(
                    tier, data["start"], data["end"], sample_size=data["sample_size"], **proposal
                )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            rows = comparison_rows(result)
    try:
        tier_url = reverse("admin:loans_credittier_change", args=[tier.pk])
    except NoReverseMatch:
        tier_url = ""
    changed = result["changed_loans"] if result else []
    context = {
        **admin.site.each_context(request),
        "title": _("Policy preview for tier %(tier)s") % {"tier": str(tier)},
        "tier": tier,
        "tier_url": tier_url,
        "form": form,
        "result": result,
        "rows": rows,
        "days": day_rows(result) if result else [],
        "changed_loans": [
            {
                **row,
                "current_label": outcome_label(row["current"]),
                "proposed_label": outcome_label(row["proposed"]),
            }
            for row in changed[:CHANGED_LOANS_SHOWN]
        ],
        "changed_loans_total": len(changed),
        "is_replay": bool(result and "replay" in result),
        "replay": result.get("replay") if result else None,
        "calls_not_replayed": (
            sum(result["replay"]["calls_not_replayed"].values()) if result and "replay" in result else 0
        ),
        "opts": CreditTier._meta,
    }
    return TemplateResponse(request, "strategy/policy_preview.html", context)
