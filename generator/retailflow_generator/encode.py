"""Vectorised text encoding of numeric columns for `LOAD DATA` (tab-separated, one row per line).

Formatting millions of values with Python's `str()` would cost more than the database spends
loading them, so every column becomes an `(n, width)` byte matrix built from lookup tables, and a
chunk of rows is one `np.concatenate(...).tobytes()`. Numbers are zero-padded to a fixed width
(`0000012345`), which MySQL reads as the plain number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_TAB = 9
_NEWLINE = 10
_LUT4 = np.array([list(f"{i:04d}".encode()) for i in range(10_000)], dtype=np.uint8)
_LUT2 = np.ascontiguousarray(_LUT4[:100, 2:])
# one row per second of the day: "HH:MM:SS"
_CLOCK = np.array(
    [list(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}".encode()) for s in range(86_400)],
    dtype=np.uint8,
)
US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
_EPOCH = np.datetime64("1970-01-01", "D")


def uint_column(values: np.ndarray, digits: int) -> np.ndarray:
    """Non-negative integers as zero-padded decimal text, `digits` wide (rounded up to 4s)."""
    v = np.asarray(values, dtype=np.int64)
    groups = max(1, -(-digits // 4))
    if len(v) and (v.min() < 0 or v.max() >= 10 ** (4 * groups)):
        raise ValueError(f"value out of range for {digits} digits")
    parts = []
    for _ in range(groups):
        parts.append(_LUT4[v % 10_000])
        v = v // 10_000
    return np.concatenate(parts[::-1], axis=1)


def digits_for(max_value: int) -> int:
    return len(str(max(int(max_value), 0)))


def cents_column(cents: np.ndarray, digits: int = 8) -> np.ndarray:
    """Money in cents as `IIIIIIII.CC` (a decimal(10, 2) value)."""
    c = np.asarray(cents, dtype=np.int64)
    dot = np.full((len(c), 1), ord("."), dtype=np.uint8)
    return np.concatenate([uint_column(c // 100, digits), dot, _LUT2[c % 100]], axis=1)


def datetime_column(us: np.ndarray) -> np.ndarray:
    """Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS.ffffff` (a datetime(6) value)."""
    us = np.asarray(us, dtype=np.int64)
    day = us // US_PER_DAY
    first = int(day.min()) if len(day) else 0
    span = (int(day.max()) - first + 1) if len(day) else 1
    # a few thousand distinct days at most: format each once, then gather
    dates = np.datetime_as_string(_EPOCH + np.arange(first, first + span), unit="D")
    date_lut = dates.astype("S10").view(np.uint8).reshape(span, 10)
    in_day = us - day * US_PER_DAY
    seconds = in_day // US_PER_SECOND
    micros = in_day - seconds * US_PER_SECOND
    n = len(us)
    space = np.full((n, 1), ord(" "), dtype=np.uint8)
    dot = np.full((n, 1), ord("."), dtype=np.uint8)
    return np.concatenate(
        [
            date_lut[day - first],
            space,
            _CLOCK[seconds],
            dot,
            _LUT2[micros // 10_000],
            _LUT4[micros % 10_000],
        ],
        axis=1,
    )


#: padding byte (never valid UTF-8) for variable-width values; `tsv_rows` drops it
FILL = 0xFF


def choice_column(codes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Small integer codes as their labels (e.g. enum values), padded with FILL to one width."""
    width = max(len(label.encode()) for label in labels)
    table = np.full((len(labels), width), FILL, dtype=np.uint8)
    for i, label in enumerate(labels):
        raw = label.encode()
        table[i, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return table[np.asarray(codes, dtype=np.int64)]


def tsv_rows(columns: Sequence[np.ndarray]) -> bytes:
    """Join `(n, width)` byte matrices into tab-separated lines, dropping FILL padding."""
    n = columns[0].shape[0]
    tab = np.full((n, 1), _TAB, dtype=np.uint8)
    newline = np.full((n, 1), _NEWLINE, dtype=np.uint8)
    pieces: list[np.ndarray] = []
    for i, col in enumerate(columns):
        if i:
            pieces.append(tab)
        pieces.append(col)
    pieces.append(newline)
    flat = np.concatenate(pieces, axis=1).ravel()
    if any(np.any(col == FILL) for col in columns):
        flat = flat[flat != FILL]
    return flat.tobytes()


def text_field(value: str) -> str:
    """Escape a string for `LOAD DATA`'s default FIELDS ESCAPED BY '\\\\'."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
