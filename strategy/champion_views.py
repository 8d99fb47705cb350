"""A tier's champion/challenger page (under /admin/, beside the policy preview): the test running (its
challenger, shares and how many customers each arm holds), the form that starts or restarts one, and the
promotion of the challenger. The work is ``strategy.experiments``; this page only gathers and shows."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from loans.models import Arm, CreditTier, PolicyAssignment, PolicyExperiment, PolicyVersion

from .experiments import promote_challenger, start_test
from .policy import Policy, format_ladder, format_rules, parse_ladder, parse_rules
from .versions import policy_of_version

VIEW_PERMISSION = "loans.view_credittier"
START_PERMISSION = "loans.run_policy_test"
PROMOTE_PERMISSION = "loans.promote_challenger"


class StartTestForm(forms.Form):
    rules = forms.CharField(
        label=gettext_lazy("challenger's reminder rules"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 40}),
        help_text=gettext_lazy("One per line: offset,channel,kind,HH:MM"),
    )
    ladder = forms.CharField(
        label=gettext_lazy("challenger's escalation steps"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 40}),
        help_text=gettext_lazy("One per line: min_dpd,action[,stage[,template kind]]"),
    )
    challenger_share = forms.DecimalField(
        label=gettext_lazy("challenger share"),
        min_value=0,
        max_value=1,
        decimal_places=3,
        initial=Decimal("0.2"),
    )
    holdout_share = forms.DecimalField(
        label=gettext_lazy("holdout share (no pre-due reminders)"),
        min_value=0,
        max_value=1,
        decimal_places=3,
        initial=Decimal("0.05"),
    )
    reason = forms.CharField(label=gettext_lazy("why"), max_length=300)

    def clean_rules(self):
        return parse_rules(self.cleaned_data["rules"])

    def clean_ladder(self):
        return parse_ladder(self.cleaned_data["ladder"])


def tier_test_view(request: HttpRequest, tier_id: int) -> HttpResponse:
    """GET: the test and the start form (prefilled with the champion). POST ``start``: start or restart the test;
    POST ``promote``: promote the challenger. Each needs its permission; compliance only reads."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    tier = get_object_or_404(CreditTier, pk=tier_id)
    test = PolicyExperiment.objects.filter(tier=tier).select_related("challenger").first()
    champion = Policy.of(tier)
    form = StartTestForm(
        request.POST if request.POST.get("action") == "start" else None,
        initial={"rules": format_rules(champion.rules), "ladder": format_ladder(champion.ladder)},
    )
    here = reverse("operator:tier_test", args=[tier.pk])
    if request.method == "POST":
        now = timezone.now()
        if request.POST.get("action") == "promote":
            if not request.user.has_perm(PROMOTE_PERMISSION):
                raise PermissionDenied
            try:
                version = promote_challenger(
                    tier, actor=request.user, at=now, reason=request.POST.get("reason", "")
                )
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                messages.success(
                    request, _("The challenger is the tier's policy now: %(v)s.") % {"v": version}
                )
            return HttpResponseRedirect(here)
        if not request.user.has_perm(START_PERMISSION):
            raise PermissionDenied
        if form.is_valid():
            data = form.cleaned_data
            try:
                start_test(
                    tier,
                    challenger=champion.changed(rules=data["rules"], ladder=data["ladder"])
                    if data["challenger_share"]
                    else None,
                    challenger_share=data["challenger_share"],
                    holdout_share=data["holdout_share"],
                    actor=request.user,
                    reason=data["reason"],
                    at=now,
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(
                    request, _("The test is running: customers are put in their arm at the next run.")
                )
                return HttpResponseRedirect(here)
    arms = {}
    if test is not None:
        arms = dict(
            PolicyAssignment.objects.filter(tier=tier, seed=test.seed)
            .values_list("arm")
            .annotate(n=Count("id"))
            .values_list("arm", "n")
        )
    context = {
        **admin.site.each_context(request),
        "title": _("Champion and challenger for tier %(tier)s") % {"tier": str(tier)},
        "tier": tier,
        "tier_url": reverse("admin:loans_credittier_change", args=[tier.pk]),
        "test": test,
        "champion_version": PolicyVersion.objects.filter(
            pk=PolicyVersion.objects.latest_ids([tier.pk]).get(tier.pk)
        ).first(),
        "challenger_policy": policy_of_version(test.challenger) if test and test.challenger else None,
        "arms": [(Arm(a).label, arms.get(a, 0)) for a in Arm.values],
        "form": form,
        "may_start": request.user.has_perm(START_PERMISSION),
        "may_promote": request.user.has_perm(PROMOTE_PERMISSION),
        "format_rules": format_rules,
        "opts": CreditTier._meta,
    }
    if context["challenger_policy"] is not None:
        context["challenger_rules"] = format_rules(context["challenger_policy"].rules)
        context["challenger_ladder"] = format_ladder(context["challenger_policy"].ladder)
    return TemplateResponse(request, "strategy/champion_challenger.html", context)
