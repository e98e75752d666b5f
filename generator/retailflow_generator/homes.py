"""Where customers live and shop: a home place (city, time zone) and a few home stores near it.

A customer's in-store orders go to the nearest stores of their own country (the country's stores
first, nearest first; other stores of the region only fill up a short list), split by
`shape.HOME_STORE_WEIGHTS`. Each customer also has their own share of online orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import shape
from .geography import Place, countries, places
from .stores import Store

EARTH_RADIUS_KM = 6371.0


def _distance_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distances (haversine), broadcasting."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2) - np.radians(lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


@dataclass(frozen=True)
class Atlas:
    """Every place customers can live in, per country (aligned with `geography.countries()`), and
    the time zones in use (by customers' places or stores), indexed for numpy."""

    places: tuple[tuple[Place, ...], ...]
    zones: tuple[str, ...]

    @classmethod
    def build(cls, stores: list[Store]) -> Atlas:
        per_country = tuple(tuple(places(c.code)) for _r, c in countries())
        zones = sorted({p.timezone for ps in per_country for p in ps} | {s.timezone for s in stores})
        return cls(per_country, tuple(zones))

    def zone_index(self, name: str) -> int:
        return self.zones.index(name)

    def locate(self, country: np.ndarray, city: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(latitude, longitude, zone index) of customers given country and city indices."""
        zone_of = {z: i for i, z in enumerate(self.zones)}
        table = [(p.latitude, p.longitude, zone_of[p.timezone]) for ps in self.places for p in ps]
        first = np.cumsum([0] + [len(ps) for ps in self.places])[:-1]
        flat = np.asarray(first)[country] + city
        arr = np.array(table, dtype=float)
        return arr[flat, 0], arr[flat, 1], arr[flat, 2].astype(np.int64)

    def city_index(self, country: int, name: str) -> int:
        """Index of a city by name within a country (0 when unknown: the country's first place)."""
        for i, p in enumerate(self.places[country]):
            if p.name == name:
                return i
        return 0


@dataclass(frozen=True)
class StoreTable:
    """The store network as arrays: id, country code, position, opening (µs), time zone index."""

    ids: np.ndarray
    country: np.ndarray  #: ISO code per store (object array)
    latitude: np.ndarray
    longitude: np.ndarray
    opened: np.ndarray
    zone: np.ndarray
    region: np.ndarray  #: region name per store (object array)

    @classmethod
    def build(cls, stores: list[Store], atlas: Atlas) -> StoreTable:
        return cls(
            ids=np.array([s.store_id for s in stores], dtype=np.int64),
            country=np.array([s.country for s in stores], dtype=object),
            latitude=np.array([s.latitude for s in stores]),
            longitude=np.array([s.longitude for s in stores]),
            opened=np.array([shape.day_us(s.opened_at) for s in stores], dtype=np.int64),
            zone=np.array([atlas.zone_index(s.timezone) for s in stores], dtype=np.int64),
            region=np.array([s.region for s in stores], dtype=object),
        )


def home_stores(
    table: StoreTable, country_code: np.ndarray, region_name: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> np.ndarray:
    """`(n, K)` store row indices (into `table`) of each customer's home stores, nearest first.

    Stores of the customer's own country come first; stores elsewhere in the region, then anywhere,
    only fill the list when the country has fewer than K. Row -1 never occurs while stores exist.
    """
    k = len(shape.HOME_STORE_WEIGHTS)
    n = len(lat)
    if not len(table.ids) or not n:
        return np.full((n, k), -1, dtype=np.int64)
    dist = _distance_km(lat[:, None], lon[:, None], table.latitude[None, :], table.longitude[None, :])
    # rank: own country first, then own region, then the rest; by distance within each
    same_country = country_code[:, None] == table.country[None, :]
    same_region = region_name[:, None] == table.region[None, :]
    key = dist + np.where(same_country, 0.0, np.where(same_region, 1e5, 1e6))
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    if order.shape[1] < k:
        order = np.concatenate([order, np.full((n, k - order.shape[1]), -1)], axis=1)
    return order.astype(np.int64)


def online_shares(rng: np.random.Generator, n: int) -> np.ndarray:
    """Each customer's own share of online orders (beta, mean ONLINE_SHARE)."""
    a = shape.ONLINE_SHARE * shape.ONLINE_SHARE_SPREAD
    return rng.beta(a, shape.ONLINE_SHARE_SPREAD - a, size=n)
