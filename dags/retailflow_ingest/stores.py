"""``data/store_locations.csv`` → rows for ``raw.store_locations`` and a quarantine for the rest.

Every record after the header is read, then loaded or quarantined (read = loaded + quarantined). A row
is quarantined (with its physical line number, the raw line and a reason) when it is empty (a blank
line, or nothing but commas), has the wrong number of fields, an empty required field (``store_id``,
``name``, ``city``, ``region``, ``country``: the dbt models test them ``not_null``), a non-integer
``store_id`` (ASCII digits with an optional sign, as the ``bigint`` column holds: from -2^63 to
2^63 - 1), a ``store_id`` already seen on an earlier line (the first one wins), a latitude outside
[-90, 90] or longitude outside [-180, 180] (or not a decimal number in ASCII digits), or an
``opened_at`` that is not a ``YYYY-MM-DD`` date. A wrong header rejects the whole file.

Numbers and dates are matched before Python reads them: ``int`` and ``Decimal`` also take ``4_1`` and
Unicode digits (``٤٢``), ``Decimal`` ``nan`` and ``inf``, ``date.fromisoformat`` ``2024-W01-1``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa

from retailflow_ingest.catalog import STORES_CSV_HEADER, STORES_PRIMARY_KEY, STORES_STREAM
from retailflow_ingest.errors import IngestError
from retailflow_ingest.source import ColumnType, Stream

#: the columns the file must have, in order (the catalog's ``store_locations.csv_header``)
HEADER = STORES_CSV_HEADER
#: types as Airbyte's CSV type inference (boolean, integer, number, string) → Postgres destination gives
#: them: no CSV column is inferred as a date, so opened_at lands as text (validated here, cast in staging);
#: a column not named here is text
_TYPES = {
    "store_id": ("bigint", pa.int64()),
    "latitude": ("decimal", pa.decimal128(12, 6)),
    "longitude": ("decimal", pa.decimal128(12, 6)),
}
STREAM = Stream(
    name=STORES_STREAM,
    primary_key=STORES_PRIMARY_KEY,
    cursor=None,
    columns=tuple(ColumnType(c, *_TYPES.get(c, ("varchar", pa.string()))) for c in HEADER),
)
QUARANTINE_TABLE = "store_locations_quarantine"
#: fields that must not be empty
REQUIRED = ("store_id", "name", "city", "region", "country")
#: what each checked field must look like (ASCII digits only: ``re``'s ``\d`` takes any Unicode digit)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: the range of ``store_id``'s bigint
_BIGINT = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Rejected:
    line_number: int
    raw_line: str
    reason: str


@dataclass(frozen=True)
class ParsedStores:
    raw: bytes
    good: pa.Table
    rejected: list[Rejected]
    #: the line number of each good row, in order
    lines: list[int] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.good.num_rows + len(self.rejected)


def _store_id(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"store_id {text!r} is not an integer")
    # the length first: int() refuses more than 4300 digits
    if len(text.lstrip("+-").lstrip("0")) > 19 or not _BIGINT[0] <= int(text) <= _BIGINT[1]:
        raise ValueError(f"store_id {text} is out of range [{_BIGINT[0]}, {_BIGINT[1]}]")
    return int(text)


def _coordinate(text: str, name: str, limit: int) -> Decimal:
    try:
        if not _DECIMAL.fullmatch(text):
            raise InvalidOperation
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not -limit <= value <= limit:
        raise ValueError(f"{name} {text} is out of range [-{limit}, {limit}]")
    return value.quantize(Decimal("0.000001"))


def parse(path: str | Path) -> ParsedStores:
    path = Path(path)
    if path.is_dir():
        raise IngestError(f"store locations CSV {path} is a folder: name the file (its store_locations.csv)")
    if not path.is_file():
        raise IngestError(f"store locations CSV not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.splitlines()
    # one reader over the whole text: a quoted field may span lines, as CSV allows
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or tuple(h.strip() for h in header) != HEADER:
        raise IngestError(f"{path}: the header must be {','.join(HEADER)}")
    columns: dict[str, list] = {c: [] for c in HEADER}
    rejected: list[Rejected] = []
    first_seen: dict[int, int] = {}
    good_lines: list[int] = []
    end = reader.line_num
    for fields in reader:
        number, end = end + 1, reader.line_num
        line = "\n".join(lines[number - 1 : end])
        try:
            if not any(f.strip() for f in fields):
                raise ValueError("empty row")
            if len(fields) != len(HEADER):
                raise ValueError(f"expected {len(HEADER)} fields, got {len(fields)}")
            record = dict(zip(HEADER, (f.strip() for f in fields), strict=True))
            missing = [name for name in REQUIRED if not record[name]]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            store_id = _store_id(record["store_id"])
            if store_id in first_seen:
                raise ValueError(f"duplicate store_id {store_id} (first on line {first_seen[store_id]})")
            latitude = _coordinate(record["latitude"], "latitude", 90)
            longitude = _coordinate(record["longitude"], "longitude", 180)
            try:  # fromisoformat alone also takes 2024-W01-1 and 20240101T0
                opened_at = date.fromisoformat(record["opened_at"]) if _DATE.fullmatch(record["opened_at"]) else None
            except ValueError:
                opened_at = None
            if opened_at is None:
                raise ValueError(f"opened_at {record['opened_at']!r} is not a YYYY-MM-DD date")
        except ValueError as exc:
            rejected.append(Rejected(number, line, str(exc)))
            continue
        first_seen[store_id] = number
        good_lines.append(number)
        for key, value in (
            ("store_id", store_id), ("latitude", latitude), ("longitude", longitude), ("opened_at", opened_at.isoformat())
        ):
            columns[key].append(value)
        for key in ("name", "city", "region", "country"):
            columns[key].append(record[key])
    good = pa.table({c.name: pa.array(columns[c.name], type=c.arrow_type) for c in STREAM.columns})
    return ParsedStores(raw, good, rejected, good_lines)


def new_places(parsed: ParsedStores, known_regions: set[str], known_countries: set[str]) -> list[str]:
    """A line per region or country the last load did not have (its first line): each adds a bar to
    the "sales by region" dashboard, which a typo ("Eurpe") or a test row ("Atlantis") should not."""
    notes, seen = [], set()
    for kind, known in (("region", known_regions), ("country", known_countries)):
        for value, line in zip(parsed.good.column(kind).to_pylist(), parsed.lines, strict=True):
            if value not in known and (kind, value) not in seen:
                seen.add((kind, value))
                notes.append(f"store_locations: line {line}: {kind} {value!r} is new (not in the last load);"
                             " it adds a bar to the sales-by-region dashboard")
    return notes


def quarantined_ids(rejected: list[Rejected]) -> dict[int, Rejected]:
    """The store ids that quarantined lines start with (a truncated line usually keeps its id)."""
    found = {}
    for r in rejected:
        first = next(csv.reader([r.raw_line.splitlines()[0] if r.raw_line else ""]), [""])
        try:
            found.setdefault(int(first[0].strip()), r)
        except (ValueError, IndexError):
            continue
    return found


def quarantine_table(rejected: list[Rejected]) -> pa.Table:
    return pa.table(
        {
            "line_number": pa.array([r.line_number for r in rejected], pa.int64()),
            "raw_line": pa.array([r.raw_line for r in rejected], pa.string()),
            "reason": pa.array([r.reason for r in rejected], pa.string()),
        }
    )
