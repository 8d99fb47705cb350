"""A phone number's zones and country are looked up once a day per customer and shared: the cache of
``loans.locations`` keeps one answer per distinct answer, not one per number."""

from __future__ import annotations

from loans.locations import _phone_facts, phone_country, phone_zones


def test_numbers_of_the_same_zone_share_one_answer():
    first, second = _phone_facts("+8613900000101"), _phone_facts("+8613900000102")
    assert first == (("Asia/Shanghai",), "CN")
    assert first is second


def test_numbers_of_other_zones_keep_their_own_answers():
    assert phone_zones("+14155550123") == ("America/Los_Angeles",) and phone_country("+14155550123") == "US"
    assert phone_zones("+6581234567") == ("Asia/Singapore",) and phone_country("+6581234567") == "SG"
    assert _phone_facts("not a number") == ((), "")
