"""Faker, once: small pools of names per country, drawn from with numpy.

Calling Faker for every row is slow (≈ 21k rows/s); a few hundred names per locale drawn at random
give the same realism at numpy speed. Pools depend only on the seed, so they are deterministic.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from faker import Faker

from .geography import countries, places

NAMES_PER_LOCALE = 250
EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "hotmail.com")
COLOURS_PER_POOL = 60


def ascii_slug(text: str) -> str:
    """`Zoë O'Brien` → `zoeobrien`: what a name looks like in an email address."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


@dataclass(frozen=True)
class CountryPool:
    code: str
    region_index: int
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    first_slugs: tuple[str, ...]
    last_slugs: tuple[str, ...]
    cities: tuple[str, ...]


@dataclass(frozen=True)
class Pools:
    countries: tuple[CountryPool, ...]
    colours: tuple[str, ...]
    brands: tuple[str, ...]


def _unique(draw, n: int) -> list[str]:
    seen: dict[str, None] = {}
    for _ in range(n * 4):
        value = draw()
        if ascii_slug(value):
            seen.setdefault(value, None)
        if len(seen) == n:
            break
    return list(seen)


@lru_cache(maxsize=4)
def build_pools(seed: int) -> Pools:
    from .geography import REGIONS

    region_index = {r.name: i for i, r in enumerate(REGIONS)}
    result = []
    for i, (region, country) in enumerate(countries()):
        # only the person provider: loading all of a locale's providers costs seconds
        fake = Faker(country.locale, providers=["faker.providers.person"])
        fake.seed_instance(seed * 1000 + i)
        if country.locale == "ja_JP":
            # romanised names: the email address is built from them
            first = _unique(fake.first_romanized_name, NAMES_PER_LOCALE)
            last = _unique(fake.last_romanized_name, NAMES_PER_LOCALE)
        else:
            first = _unique(fake.first_name, NAMES_PER_LOCALE)
            last = _unique(fake.last_name, NAMES_PER_LOCALE)
        result.append(
            CountryPool(
                code=country.code,
                region_index=region_index[region.name],
                first_names=tuple(first),
                last_names=tuple(last),
                first_slugs=tuple(ascii_slug(x) for x in first),
                last_slugs=tuple(ascii_slug(x) for x in last),
                cities=tuple(place.name for place in places(country.code)),
            )
        )
    fake = Faker("en_US", providers=["faker.providers.color", "faker.providers.person"])
    fake.seed_instance(seed)
    colours = _unique(fake.color_name, COLOURS_PER_POOL)
    brands = _unique(lambda: fake.last_name() + fake.random_element((" & Co", " Works", " Goods", "")), 40)
    return Pools(countries=tuple(result), colours=tuple(colours), brands=tuple(brands))
