"""Who changed a tier's policy, and why: the context a save of a tier, a reminder rule or a ladder step is made
in. The admin and the configuration imports open it (``policy_change``); the strategy app, told by
``loans.signals.policy_saved``, records one new policy version per changed tier when it closes. A save outside any
such context (a script, the shell) is announced at once, by ``system`` and without a reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import actor_name

from .signals import policy_saved


@dataclass
class PolicyChange:
    actor: str
    reason: str
    at: dt.datetime
    tier_ids: set[int] = field(default_factory=set)
    any_tier: bool = False


_current: ContextVar[PolicyChange | None] = ContextVar("policy_change", default=None)


@contextmanager
def policy_change(actor: Any, reason: str = "", at: dt.datetime | None = None) -> Iterator[PolicyChange]:
    """Collect the tiers whose policy is saved inside the block and announce them once at its end (one version
    per tier for a tier saved with its inline rules and steps). Nested blocks join the outer one. Nothing is
    announced when the block raises."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    change = PolicyChange(actor=actor_name(actor), reason=(reason or "")[:300], at=at or timezone.now())
    token = _current.set(change)
    try:
        yield change
    finally:
        _current.reset(token)
    if change.tier_ids or change.any_tier:
        _send(None if change.any_tier else sorted(change.tier_ids), change)


def announce(tier_ids: Iterable[int] | None) -> None:
    """A tier's policy was saved (``None``: some tiers, unknown which; each is compared with its last version)."""
    change = _current.get()
    if change is None:
        _send(None if tier_ids is None else sorted(set(tier_ids)), PolicyChange("system", "", timezone.now()))
        return
    if tier_ids is None:
        change.any_tier = True
    else:
        change.tier_ids.update(tier_ids)


def _send(tier_ids: list[int] | None, change: PolicyChange) -> None:
    policy_saved.send(
        sender=PolicyChange, tier_ids=tier_ids, actor=change.actor, reason=change.reason, at=change.at
    )


# --- the admin and the import files open the context ---------------------------------------------------------
REASON_FIELD = "policy_change_reason"


class PolicyChangeAdminMixin:
    """Admin of a tier's policy (the tier with its inline rules and ladder, a rule, a step): what one request saves
    is one new version per tier changed, saved by the user, for the reason typed in the form's "why" field; the
    version is recorded in the request's transaction."""

    def get_form(self, request, obj=None, **kwargs):
        why = forms.CharField(
            label=_("Why (recorded with the new policy version)"),
            max_length=300,
            required=False,
            widget=forms.TextInput(attrs={"size": 80}),
        )
        base = kwargs.get("form", self.form)
        kwargs["form"] = type(f"Policy{base.__name__}", (base,), {REASON_FIELD: why})
        return super().get_form(request, obj, **kwargs)

    def changeform_view(self, request, *args, **kwargs):
        with transaction.atomic(), policy_change(request.user, request.POST.get(REASON_FIELD, "")):
            return super().changeform_view(request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        with transaction.atomic(), policy_change(request.user, _("deleted in the admin")):
            return super().delete_view(request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        with transaction.atomic(), policy_change(request.user, _("changed from the list")):
            return super().changelist_view(request, *args, **kwargs)


class PolicyImportMixin:
    """Import resources of a tier's policy (tiers, reminder rules, ladder steps): a file imported is one new
    version of each tier it changed, saved by the importer, "import of <file>". Rows are written in bulk (no
    model signal), so every tier is compared with its last version."""

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if self.is_dry_run or result.has_errors() or result.has_validation_errors():
            return
        reason = _("import of %(file)s") % {"file": kwargs.get("file_name") or _("a file")}
        with policy_change(kwargs.get("user") or "import", reason):
            announce(None)
