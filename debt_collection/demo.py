"""Demo ladders per tier and a couple of agencies (called by ``manage.py seed_demo``; idempotent)."""

from __future__ import annotations

from loans.models import CreditTier

from .models import Agency, EscalationStep

# (min_dpd, stage, action, kind): low-risk A reaches the phone at 15 DPD, very-high-risk D at 3.
LADDERS: dict[str, list[tuple[int, str, str, str]]] = {
    "A": [
        (1, "early", "sms", "overdue"),
        (8, "firm", "sms", "overdue"),
        (8, "firm", "email", "overdue"),
        (15, "call", "call_task", ""),
        (60, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "B": [
        (1, "early", "sms", "overdue"),
        (5, "firm", "sms", "overdue"),
        (10, "call", "call_task", ""),
        (45, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "C": [
        (1, "early", "sms", "overdue"),
        (3, "firm", "push", "overdue"),
        (5, "call", "call_task", ""),
        (35, "agency", "agency", ""),
        (75, "legal", "legal", ""),
    ],
    "D": [
        (1, "early", "sms", "overdue"),
        (3, "call", "call_task", ""),
        (7, "firm", "sms", "overdue"),
        (30, "agency", "agency", ""),
        (60, "legal", "legal", ""),
    ],
}

AGENCIES = [
    ("HUAXIN", "华信催收服务有限公司", False),
    ("PEARL", "Pearl River Recoveries", True),
]


def seed(stdout=None) -> dict[str, int]:
    """Create the demo ladders (tiers looked up by code; a missing tier is skipped) and agencies."""
    created = 0
    for code, steps in LADDERS.items():
        tier = CreditTier.objects.filter(code=code).first()
        if tier is None:
            continue
        for min_dpd, stage, action, kind in steps:
            _, was_created = EscalationStep.objects.get_or_create(
                tier=tier, min_dpd=min_dpd, action=action, defaults={"stage": stage, "kind": kind}
            )
            created += was_created
    agencies = 0
    for code, name, may_see in AGENCIES:
        _, was_created = Agency.objects.get_or_create(
            code=code, defaults={"name": name, "may_see_personal_data": may_see}
        )
        agencies += was_created
    if stdout is not None:
        stdout.write(f"collections: {created} escalation steps, {agencies} agencies created")
    return {"escalation_steps": created, "agencies": agencies}
