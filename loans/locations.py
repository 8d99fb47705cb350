"""Where a customer may be: the time zones and countries that every source the product has implies.

Regulation F comment 6(b)(1)(i)-2: when a debt collector has conflicting or missing information about a
consumer's location, a time is convenient only if it is convenient in every location the consumer may be in.
So the zones of a customer are the union of what each source says (the zone the customer gave, the zones of the
phone number's country and area code, an address when the product holds one), never one picked out of them; a
zone nobody gave is not guessed: when no source says anything, the operators' ``TIME_ZONE`` is used and the
fact is recorded (``is_assumed``).

Pure functions over plain values; ``Customer.location`` gathers the inputs.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
from phonenumbers import timezone as phone_timezone

# libphonenumber's answer for a number it cannot place.
_UNKNOWN = "Etc/Unknown"


@dataclass(frozen=True)
class Location:
    """Every zone and country a customer may be in, and where each came from (for the audit trail)."""

    zones: tuple[str, ...]
    countries: tuple[str, ...]
    stored_zone: str = ""
    phone_zones: tuple[str, ...] = ()
    phone_country: str = ""
    is_assumed: bool = False

    def audit(self) -> dict:
        """The inputs a decision names: the zones used and the source of each."""
        return {
            "zones": list(self.zones),
            "zone_sources": {
                "stored": self.stored_zone or None,
                "phone": list(self.phone_zones),
                "assumed": self.zones[0] if self.is_assumed else None,
            },
            "countries": list(self.countries),
        }


# One entry per phone number: its zones and country. A day's run reads the location of the same customer when
# planning, advancing collections and dispatching; parsing a number costs 50-100 microseconds. The cache holds
# a large book's day (a 1,000,000-loan book plans about 110,000 customers a day, then sends to the same ones:
# with fewer entries than that, planning's pass evicts each number before dispatch asks for it again). An entry
# is the number's text and the lookup's own cost, about 150 bytes (40 MB when full): the answers are shared,
# as a book has only a few hundred distinct ones.
_ANSWERS: dict[tuple[tuple[str, ...], str], tuple[tuple[str, ...], str]] = {}


@functools.lru_cache(maxsize=262144)
def _phone_facts(phone: str) -> tuple[tuple[str, ...], str]:
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return (), ""
    zones = tuple(sorted(z for z in phone_timezone.time_zones_for_number(parsed) if z != _UNKNOWN))
    region = phonenumbers.region_code_for_number(parsed) or ""
    answer = (zones, "" if region == "ZZ" else region)
    return _ANSWERS.setdefault(answer, answer)


def phone_zones(phone: str) -> tuple[str, ...]:
    """The zones libphonenumber's data gives for an E.164 number (its country and area code), sorted; empty when
    the number is unknown or cannot be placed."""
    return _phone_facts(phone or "")[0]


def phone_country(phone: str) -> str:
    """The ISO country of an E.164 number ("" when unknown)."""
    return _phone_facts(phone or "")[1]


@functools.lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    """Zone -> ISO country from the tz database's ``zone.tab`` (the first country listed for a zone)."""
    for base in zoneinfo.TZPATH:
        path = Path(base) / "zone.tab"
        if path.is_file():
            countries: dict[str, str] = {}
            for line in path.read_text(encoding="utf-8").splitlines():
                if line and not line.startswith("#"):
                    parts = line.split("\t")
                    if len(parts) >= 3:
                        countries.setdefault(parts[2], parts[0])
            return countries
    return {}


def zone_country(zone: str) -> str:
    """The ISO country a zone belongs to ("" when the tz database does not say)."""
    return _zone_countries().get(zone, "")


def locate(*, stored_zone: str, phone: str, default_zone: str) -> Location:
    """The location of a customer from every source: the zone they gave (``stored_zone``, "" when unknown) and the
    zones of their phone number. With no source at all, ``default_zone`` (the operators' zone), marked assumed.
    Countries come from the phone number and the zones' countries."""
    zones_from_phone = phone_zones(phone)
    zones = set(zones_from_phone)
    if stored_zone:
        zones.add(stored_zone)
    assumed = not zones
    if assumed:
        zones.add(default_zone)
    country = phone_country(phone)
    countries = {country} if country else set()
    if stored_zone or assumed:
        # A phone's country already names its zones' country; a +1 number's many zones are not all the US.
        for zone in (stored_zone,) if stored_zone else (default_zone,):
            if zone_country(zone):
                countries.add(zone_country(zone))
    return Location(
        zones=tuple(sorted(zones)),
        countries=tuple(sorted(countries)),
        stored_zone=stored_zone,
        phone_zones=zones_from_phone,
        phone_country=country,
        is_assumed=assumed,
    )


def calendar_zone(*, phone: str, default_zone: str) -> str:
    """The zone whose calendar a customer with no zone of their own follows (their local day for due dates and
    planning): the phone number's zone when it has exactly one, else the operators' zone. The contact window
    still checks every zone of ``locate``."""
    zones = phone_zones(phone)
    return zones[0] if len(zones) == 1 else default_zone
