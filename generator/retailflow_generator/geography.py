"""Where RetailFlow sells: sales regions, their countries and how much of the business each carries.

The same weights drive the store network (more stores where the business is) and the customer base,
so a region's share of revenue follows its weight.
"""

from __future__ import annotations

from dataclasses import dataclass

from faker.providers.geo import Provider as GeoProvider


@dataclass(frozen=True)
class Country:
    code: str  #: ISO 3166-1 alpha-2, as stored in customers.country and the stores CSV
    locale: str  #: Faker locale for names of people living there
    weight: float  #: share of the region's customers


@dataclass(frozen=True)
class Region:
    name: str
    weight: float  #: share of all customers (and of stores)
    countries: tuple[Country, ...]


REGIONS: tuple[Region, ...] = (
    Region(
        "North America",
        0.38,
        (Country("US", "en_US", 0.85), Country("CA", "en_CA", 0.15)),
    ),
    Region(
        "Western Europe",
        0.27,
        (
            Country("GB", "en_GB", 0.32),
            Country("DE", "de_DE", 0.30),
            Country("FR", "fr_FR", 0.22),
            Country("NL", "nl_NL", 0.10),
            Country("BE", "nl_BE", 0.06),
        ),
    ),
    Region(
        "Southern Europe",
        0.12,
        (Country("ES", "es_ES", 0.40), Country("IT", "it_IT", 0.45), Country("PT", "pt_PT", 0.15)),
    ),
    Region(
        "Asia Pacific",
        0.15,
        (Country("AU", "en_AU", 0.40), Country("JP", "ja_JP", 0.35), Country("IN", "en_IN", 0.25)),
    ),
    Region(
        "Latin America",
        0.08,
        (Country("BR", "pt_BR", 0.60), Country("MX", "es_MX", 0.40)),
    ),
)


def countries() -> list[tuple[Region, Country]]:
    """Every (region, country) pair, in a fixed order."""
    return [(region, country) for region in REGIONS for country in region.countries]


def country_weights() -> list[float]:
    """Share of all customers per country, aligned with `countries()`."""
    return [region.weight * country.weight for region, country in countries()]


@dataclass(frozen=True)
class Place:
    name: str
    latitude: float
    longitude: float
    timezone: str  #: IANA time zone name, e.g. Europe/Rome


def places(country_code: str) -> list[Place]:
    """Real places of a country, from Faker's geo data (which carries each place's time zone)."""
    return [
        Place(name, float(lat), float(lon), tz)
        for lat, lon, name, code, tz in GeoProvider.land_coords
        if code == country_code
    ]
