"""Factories and helpers for the audit trail and export tests."""

from __future__ import annotations

import datetime as dt
import itertools

from django.db import connection

from core.audit import Event, log_events


def make_events(n: int, *, action: str = "tests.thing.changed", actor: str = "job:tests") -> list:
    return log_events(
        Event(
            action=action,
            actor=actor,
            object_type="tests.Thing",
            object_id=str(i),
            before={"v": i},
            after={"v": i + 1},
        )
        for i in range(n)
    )


def tamper(sql: str, params=()) -> None:
    """Change the audit table behind the application's back: lift the triggers, run ``sql``, put them back."""
    from core.audit_triggers import install_audit_triggers, remove_audit_triggers

    remove_audit_triggers(connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    install_audit_triggers(connection)


def rewrite_trail(seq: int, after) -> None:
    """An attacker with database access: change event ``seq``'s ``after`` and recompute the hash of it and of every
    event after it, and the chain head, so the chain alone looks valid again."""
    import json

    from core.audit import compute_hash, event_payload
    from core.models import AuditEvent

    events = list(AuditEvent.objects.filter(seq__gte=seq).order_by("seq"))
    prev = events[0].prev_hash
    statements = []
    for event in events:
        if event.seq == seq:
            event.after = after
        payload = event_payload(
            seq=event.seq,
            at=event.at,
            actor=event.actor,
            action=event.action,
            object_type=event.object_type,
            object_id=event.object_id,
            before=event.before,
            after=event.after,
        )
        digest = compute_hash(prev, payload)
        statements.append(
            (
                "UPDATE backoffice_auditevent SET after = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [json.dumps(event.after), prev, digest, event.pk],
            )
        )
        prev = digest
    statements.append(("UPDATE backoffice_auditchainhead SET hash = %s WHERE id = 1", [prev]))
    for sql, params in statements:
        tamper(sql, params)


def rewind_trail(keep_up_to: int) -> None:
    """An attacker with database access: delete the events after seq ``keep_up_to`` and rewind the chain head."""
    from core.models import AuditEvent

    last = AuditEvent.objects.get(seq=keep_up_to)
    tamper("DELETE FROM backoffice_auditevent WHERE seq > %s", [keep_up_to])
    tamper("UPDATE backoffice_auditchainhead SET seq = %s, hash = %s WHERE id = 1", [last.seq, last.hash])


_NOTIFICATION_SEQ = itertools.count(1)


def make_notification(customer=None, **kwargs):
    """A NotificationLog row; the customer is created when not given."""
    from notifications.models import NotificationLog
    from tests.factories import make_customer

    n = next(_NOTIFICATION_SEQ)
    customer = customer or make_customer()
    kwargs.setdefault("channel", "sms")
    kwargs.setdefault("kind", "pre_due")
    kwargs.setdefault("status", "sent")
    kwargs.setdefault("scheduled_for", dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC))
    kwargs.setdefault("destination", customer.phone)
    kwargs.setdefault("body", f"Dear {customer.name}, your instalment is due.")
    kwargs.setdefault("loan_refs", f"L{n:07d}")
    kwargs.setdefault("dedupe_key", f"tests-{n}-{customer.pk}")
    return NotificationLog.objects.create(customer=customer, **kwargs)


def make_compliance_officer(username="compliance"):
    """A user in the "Compliance officer" role when the roles exist, else given the role's permissions."""
    from django.contrib.auth.models import Group, Permission

    from tests.factories import make_user

    user = make_user(username)
    group = Group.objects.filter(name="Compliance officer").first()
    if group is not None and group.permissions.filter(codename="export_auditevent").exists():
        user.groups.add(group)
    else:
        for app_label, codename in (
            ("core", "view_auditevent"),
            ("core", "export_auditevent"),
            ("notifications", "view_notificationlog"),
            ("notifications", "export_notificationlog"),
        ):
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
    return type(user).objects.get(pk=user.pk)
