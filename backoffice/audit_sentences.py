"""Audit events as sentences an operator reads ("Call recorded by alice: no answer"), not JSON.

The action codes are the contract (SPEC.md); their phrasing lives here, above the apps that write them, so one
screen can speak of messages, calls, promises and payments alike. A code without a phrasing of its own still
reads as a sentence ("Contact extended by job:plan"), made from the code's last two parts. Personal data in
the facts quoted (a voicemail, a note) goes through the viewer's ``Masker``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from core.masking import Masker
from core.money import format_money
from debt_collection.models import CallTask
from loans.models import Payment
from notifications.models import NotificationLog


@dataclass(frozen=True)
class Sentence:
    """One audit event as the timeline shows it: the sentence, and the event's code and number to cite."""

    seq: int
    at: Any
    action: str
    text: str


def _lower_first(label: str) -> str:
    """``No answer`` -> ``no answer`` inside a sentence; ``SMS`` stays ``SMS``."""
    if len(label) > 1 and label[0].isupper() and label[1].islower():
        return label[0].lower() + label[1:]
    return label


def _label(choices, code: Any) -> str:
    try:
        return _lower_first(str(choices(code).label))
    except ValueError:
        return str(code or "")


def _reason(after: dict) -> str:
    code = after.get("reason") or ""
    if not code:
        return ""
    return _label(NotificationLog.Reason, code)


def _generic(action: str) -> str:
    parts = action.split(".")
    noun, verb = (parts[-2], parts[-1]) if len(parts) >= 2 else ("", parts[-1])
    return f"{noun.replace('_', ' ').capitalize()} {verb.replace('_', ' ')}".strip()


def _contact(event, after: dict, masker: Masker, pii: dict) -> str:
    status = event.action.rsplit(".", 1)[-1]
    verbs = {
        "planned": _("Planned by %(actor)s"),
        "sent": _("Sent by %(actor)s"),
        "delivered": _("Delivery confirmed by %(actor)s"),
        "failed": _("Failed, said %(actor)s"),
        "suppressed": _("Held back by %(actor)s"),
        "deferred": _("Deferred by %(actor)s"),
        "cancelled": _("Cancelled by %(actor)s"),
        "expired": _("Expired, said %(actor)s"),
        "fell_back": _("Failed over to the next channel by %(actor)s"),
        "extended": _("Extended to more instalments by %(actor)s"),
    }
    text = verbs.get(status, _("%(what)s by %(actor)s")) % {
        "actor": event.actor,
        "what": _generic(event.action),
    }
    reason = _reason(after)
    if reason:
        text += ": " + reason
    if after.get("cap") and after.get("contacts_in_7_days") is not None:
        text += " " + _("(%(n)s of %(cap)s in 7 days)") % {
            "n": after["contacts_in_7_days"],
            "cap": after["cap"],
        }
    return text


def _call(event, after: dict, masker: Masker, pii: dict) -> str:
    verb = event.action.rsplit(".", 1)[-1]
    if verb == "recorded":
        text = _("Call recorded by %(actor)s: %(outcome)s") % {
            "actor": event.actor,
            "outcome": _label(CallTask.Outcome, after.get("outcome")),
        }
        if after.get("voicemail_message"):
            text += " · " + _("voicemail: %(message)s") % {
                "message": masker.message(str(after["voicemail_message"]), **pii)
            }
        if after.get("note"):
            text += " · " + _("note: %(note)s") % {"note": masker.text(str(after["note"]), **pii)}
        return text
    if verb == "scheduled":
        return _("Call scheduled by %(actor)s") % {"actor": event.actor}
    if verb == "cancelled":
        reason = _reason(after) or str(after.get("reason") or "")
        text = _("Call cancelled by %(actor)s") % {"actor": event.actor}
        return f"{text}: {reason}" if reason else text
    return _("%(what)s by %(actor)s") % {"what": _generic(event.action), "actor": event.actor}


def _promise(event, after: dict, masker: Masker, pii: dict) -> str:
    verb = event.action.rsplit(".", 1)[-1]
    facts = {
        "actor": event.actor,
        "amount": format_money(after.get("amount")),
        "date": after.get("promised_date", ""),
    }
    phrasing = {
        "created": _("Promise to pay %(amount)s by %(date)s recorded by %(actor)s"),
        "kept": _("Promise kept, said %(actor)s"),
        "broken": _("Promise to pay %(amount)s by %(date)s broken, said %(actor)s"),
        "reminder_planned": _("Promise reminder planned by %(actor)s"),
    }
    return phrasing.get(verb, _("%(what)s by %(actor)s")) % {**facts, "what": _generic(event.action)}


def _payment(event, after: dict, masker: Masker, pii: dict) -> str:
    verb = event.action.rsplit(".", 1)[-1]
    facts = {
        "actor": event.actor,
        "ref": after.get("ref", ""),
        "amount": format_money(after.get("amount")),
        "source": _label(Payment.Source, after.get("source")) if after.get("source") else "",
    }
    phrasing = {
        "recorded": _("Payment %(ref)s of %(amount)s recorded by %(actor)s"),
        "changed": _("Payment %(ref)s corrected by %(actor)s"),
        "deleted": _("Payment %(ref)s reversed by %(actor)s"),
        "allocated": _("Payment allocated by %(actor)s"),
    }
    return phrasing.get(verb, _("%(what)s by %(actor)s")) % {**facts, "what": _generic(event.action)}


PHRASINGS = {
    "notifications.contact.": _contact,
    "collections.call.": _call,
    "collections.promise.": _promise,
    "loans.payment.": _payment,
}


def sentence_of(event, *, masker: Masker, pii: dict) -> Sentence:
    """``event`` (an ``AuditEvent``) as one sentence; ``pii`` holds the customer's known personal values
    (``known_of``) for masking what the event quotes."""
    after = event.after if isinstance(event.after, dict) else {}
    for prefix, phrase in PHRASINGS.items():
        if event.action.startswith(prefix):
            text = phrase(event, after, masker, pii)
            break
    else:
        text = _("%(what)s by %(actor)s") % {"what": _generic(event.action), "actor": event.actor}
    return Sentence(seq=event.seq, at=event.at, action=event.action, text=text)
