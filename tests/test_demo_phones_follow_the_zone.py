"""The demo's customers in Los Angeles and Singapore have local numbers (+1, +65), the others +86; seeding again
keeps every number as it was."""

from __future__ import annotations

import io

import phonenumbers
import pytest
from django.core.management import call_command

from loans.models import Customer
from tests.test_seed_demo import TODAY, seeded  # noqa: F401  (the seeded demo book)

pytestmark = pytest.mark.django_db

COUNTRY_OF_ZONE = {"Asia/Shanghai": 86, "America/Los_Angeles": 1, "Asia/Singapore": 65}


def numbers_by_zone():
    found: dict[str, set[int]] = {}
    for zone, phone in Customer.objects.exclude(phone="").values_list("timezone", "phone"):
        found.setdefault(zone, set()).add(phonenumbers.parse(phone).country_code)
    return found


def test_it_gives_the_customers_of_each_zone_a_local_number(seeded):  # noqa: F811
    found = numbers_by_zone()

    assert found == {zone: {country} for zone, country in COUNTRY_OF_ZONE.items()}
    phones = Customer.objects.exclude(phone="").values_list("phone", flat=True)
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(phone)) for phone in phones)


def test_it_keeps_every_number_when_seeded_again(seeded):  # noqa: F811
    before = dict(Customer.objects.values_list("ref", "phone"))

    call_command("seed_demo", "--today", TODAY.isoformat(), "--allow-production", stdout=io.StringIO())

    assert dict(Customer.objects.values_list("ref", "phone")) == before
