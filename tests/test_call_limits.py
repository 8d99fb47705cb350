"""The call gates as a pure rule: ``may_call(now, loan_id, calls_made, callee, rules)`` over the calls actually
made (Regulation F 1006.14(b)(2), 1006.6(b)(1)(i)), one row per case."""

from __future__ import annotations

import datetime as dt

import pytest

from loans.locations import locate
from notifications.compliance import CallMade, Rules, Window
from notifications.gates import Callee, earliest_call, may_call

from .factories_reminders import LOS_ANGELES, SHANGHAI, local

RULES = Rules(Window(dt.time(8), dt.time(21)), 7, 7, 3, jurisdictions=("CN",))
A, B = 1, 2


def at(day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    """``hour`` in Shanghai on December ``day``, 2026 (Tuesday the 1st)."""
    return local(SHANGHAI, 2026, 12, day, hour, minute)


def callee(**kwargs) -> Callee:
    kwargs.setdefault("location", locate(stored_zone=SHANGHAI, phone="+8613800138000", default_zone=SHANGHAI))
    kwargs.setdefault("calendar_zone", SHANGHAI)
    return Callee(**kwargs)


def call(moment, *loans, talked=False) -> CallMade:
    return CallMade(moment, frozenset(loans or (A,)), talked)


CASES = [
    # (why, now, calls made, callee overrides, reason, limit)
    ("a call inside the window", at(3, 10), [], {}, "", None),
    ("22:30 local", at(3, 22, 30), [], {}, "outside_contact_window", None),
    ("07:59 local", at(3, 7, 59), [], {}, "outside_contact_window", None),
    (
        "two days after a conversation",
        at(3, 10),
        [call(at(1, 11), talked=True)],
        {},
        "call_limit",
        "conversation",
    ),
    (
        "the 7th day counting the conversation's day as the 1st",
        at(7, 20),
        [call(at(1, 11), talked=True)],
        {},
        "call_limit",
        "conversation",
    ),
    ("the 8th day after a conversation", at(8, 8), [call(at(1, 20), talked=True)], {}, "", None),
    (
        "a conversation that covered the loan",
        at(3, 10),
        [call(at(2, 11), B, A, talked=True)],
        {},
        "call_limit",
        "conversation",
    ),
    ("a conversation about another loan only", at(3, 10), [call(at(2, 11), B, talked=True)], {}, "", None),
    (
        "an 8th call in 7 days, counted by when they were made",
        at(7, 12),
        [call(at(d, h)) for d, h in [(1, 9), (1, 12), (2, 9), (3, 9), (4, 9), (5, 9), (6, 9)]],
        {},
        "call_limit",
        "calls_per_debt_in_7_days",
    ),
    (
        "a call covering the loan counts for it",
        at(7, 12),
        [call(at(d, 9), B, A) for d in range(1, 8)],
        {},
        "call_limit",
        "calls_per_debt_in_7_days",
    ),
    ("7 calls, the oldest out of the 7 days", at(8, 12), [call(at(d, 9)) for d in range(1, 8)], {}, "", None),
    (
        "a 4th attempt on one day across loans",
        at(3, 20),
        [call(at(3, 9), B), call(at(3, 13), A), call(at(3, 17), B)],
        {},
        "call_limit",
        "attempts_per_day",
    ),
    ("3 attempts yesterday", at(4, 9), [call(at(3, h)) for h in (9, 13, 17)], {}, "", None),
    ("do not contact", at(3, 10), [], {"do_not_contact": True}, "do_not_contact", None),
    ("asked to stop calls", at(3, 10), [], {"opted_out_of_calls": True}, "opted_out", None),
    ("no phone", at(3, 10), [], {"has_phone": False}, "no_destination", None),
    (
        "the weekly contact cap",
        at(3, 10),
        [],
        {"contacts_in_7_days": 3, "max_contacts_per_week": 3},
        "frequency_cap",
        None,
    ),
    (
        "a US phone: 10:00 in Shanghai is 18:00 in Los Angeles",
        at(3, 10),
        [],
        {"location": locate(stored_zone=SHANGHAI, phone="+14155550123", default_zone=SHANGHAI)},
        "",
        None,
    ),
    (
        "a US phone: 14:00 in Shanghai is 22:00 in Los Angeles",
        at(3, 14),
        [],
        {"location": locate(stored_zone=SHANGHAI, phone="+14155550123", default_zone=SHANGHAI)},
        "outside_contact_window",
        None,
    ),
]


@pytest.mark.parametrize("why, now, made, overrides, reason, limit", CASES, ids=[c[0] for c in CASES])
def test_may_call(why, now, made, overrides, reason, limit):
    decision = may_call(now, A, made, callee(**overrides), RULES)
    assert (decision.allowed, decision.reason) == (not reason, reason), why
    assert decision.inputs.get("limit") == limit


def test_the_8th_call_waits_for_the_oldest_to_leave_the_7_days():
    made = [call(at(d, 9)) for d in range(1, 8)]  # one a day, December 1 to 7
    refused = may_call(at(7, 12), A, made, callee(), RULES)
    assert refused.not_before == at(8, 0)  # December 1 leaves the 7 days at midnight
    assert may_call(at(8, 10), A, made, callee(), RULES).allowed


def test_the_earliest_call_follows_each_refusal_to_the_first_allowed_moment():
    made = [call(at(3, 11), talked=True)]
    assert earliest_call(at(4, 10), A, made, callee(), RULES) == at(10, 8)
    assert earliest_call(at(3, 22), B, [], callee(), RULES) == at(4, 8)
    assert earliest_call(at(3, 10), A, [], callee(opted_out_of_calls=True), RULES) is None


def test_in_two_zones_the_day_ends_last_where_it_ends_last():
    both = locate(stored_zone=LOS_ANGELES, phone="+8613800138000", default_zone=SHANGHAI)
    made = [call(at(3, 9), B), call(at(3, 10)), call(at(3, 11), B)]  # 17:00-19:00 on the 2nd in Los Angeles
    decision = may_call(at(4, 10), A, made, callee(location=both, calendar_zone=LOS_ANGELES), RULES)
    # 10:00 on the 4th in Shanghai is 18:00 on the 3rd in Los Angeles: a new day in Shanghai only.
    assert decision.allowed
    decision = may_call(at(3, 12), A, made, callee(location=both, calendar_zone=LOS_ANGELES), RULES)
    assert decision.inputs.get("limit") == "attempts_per_day"
