"""Rewrites what is generated from the catalog (``catalog.json``) in two committed files: ``make crd``.

- the RetailPipeline CRD (charts/retailflow-operator/crds/retailpipelines.yaml): the stream names, the
  rules tying each stream to its table's primary key and cursor (with their messages), the default
  ports of MySQL and the warehouse, the default variable prefix and the default connection ids;
- the contract block of operator/README.md (``<!-- contract:begin -->``): the catalog's
  ``airflow.variables``.

Only those values change; the rest of each file (comments included) is kept as written. Run from a
checkout: ``python -m retailflow_operator.generate`` rewrites both files, ``--check`` only says whether
they are current (exit status 1 when not).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from . import catalog

PACKAGE = Path(__file__).resolve().parent
#: The committed CRD (this package's ``retailpipelines.yaml`` is a symlink to it).
CRD_FILE = (PACKAGE / "retailpipelines.yaml").resolve()
README_FILE = PACKAGE.parent / "README.md"

_SPEC = ("openAPIV3Schema", "properties", "spec", "properties")
_STREAM_ITEMS = (*_SPEC, "mysql", "properties", "streams", "items")
CONTRACT_BLOCK = re.compile(r"(<!-- contract:begin -->\n```json\n)(.*?)(```\n<!-- contract:end -->)", re.S)


# ---------------------------------------------------------------- the values, from the catalog


def stream_rules(tables: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """The CEL rules (rule, message) of a ``spec.mysql.streams`` item: its key and cursor are its table's."""
    keys = ", ".join(f"'{t}': '{pk}'" for t, (pk, _) in tables.items())
    listed = ", ".join(f"{t}: {pk}" for t, (pk, _) in tables.items())
    rules = [
        (
            f"!has(self.primaryKey) || self.primaryKey == {{{keys}}}[self.name]",
            f"primaryKey must be the table's own key ({listed}), or left out: deduplicating on another column"
            " silently drops rows",
        )
    ]
    cursors = {cursor for _, cursor in tables.values()}
    if len(cursors) == 1:
        (cursor,) = cursors
        rules.append(
            (
                f"!has(self.cursorField) || self.cursorField == '{cursor}'",
                f"cursorField must be {cursor} (or left out): it is the only column of the orders tables that"
                " changes on every update, so any other cursor misses updated rows",
            )
        )
    else:
        by_table = ", ".join(f"'{t}': '{c}'" for t, (_, c) in tables.items())
        listed_cursors = ", ".join(f"{t}: {c}" for t, (_, c) in tables.items())
        rules.append(
            (
                f"!has(self.cursorField) || self.cursorField == {{{by_table}}}[self.name]",
                f"cursorField must be the table's own cursor ({listed_cursors}), or left out: it is the column"
                " that changes on every update, so any other cursor misses updated rows",
            )
        )
    return rules


def crd_values() -> dict[tuple[str, ...], Any]:
    """Path in the CRD (mapping keys from ``openAPIV3Schema``) -> the value the catalog gives it."""
    airflow = (*_SPEC, "airflow", "properties")
    values: dict[tuple[str, ...], Any] = {
        (*_STREAM_ITEMS, "properties", "name", "enum"): list(catalog.SOURCE_TABLES),
        (*_SPEC, "mysql", "properties", "port", "default"): catalog.PORTS["mysql"],
        (*_SPEC, "warehouse", "properties", "port", "default"): catalog.PORTS["postgresql"],
        (*airflow, "variablePrefix", "default"): catalog.DEFAULT_VARIABLE_PREFIX,
    }
    for role, conn_id in catalog.DEFAULT_CONNECTION_IDS.items():
        values[(*airflow, "connectionIds", "properties", role, "default")] = conn_id
    return values


# ---------------------------------------------------------------- editing block YAML in place


def _scalar(value: Any) -> str:
    """``value`` as a YAML flow scalar: plain when YAML reads it back as the same value, else quoted."""
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    plain = str(value).lower() if isinstance(value, bool) else str(value)
    if not re.search(r"[:#,\[\]{}&*!|>'\"%@`]|^\s|\s$", plain) and yaml.safe_load(plain) == value:
        return plain
    return json.dumps(value)


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _column(line: str) -> int:
    """The column a line's key starts at (after a list item's ``- ``)."""
    m = re.match(r"(\s*)(- )?", line)
    return len(m.group(1)) + len(m.group(2) or "")


def _block(lines: list[str], head: int) -> range:
    """The lines below line ``head`` that belong to it (indented deeper than its key)."""
    col = _column(lines[head])
    end = head + 1
    while end < len(lines) and (not _content(lines[end]) or _column(lines[end]) > col):
        end += 1
    return range(head + 1, end)


def _find(lines: list[str], path: tuple[str, ...], below: int | None = None) -> int:
    """The line of the key at ``path``: each key a direct child of the one before it; the first key is
    a direct child of line ``below``, or, without it, the one line of the file holding that key."""
    at = below
    for key in path:
        pattern = re.compile(rf"\s*(- )?{re.escape(key)}:(\s|$)")
        if at is None:
            hits = [i for i, line in enumerate(lines) if pattern.match(line)]
        else:
            content = [i for i in _block(lines, at) if _content(lines[i])]
            col = min((_column(lines[i]) for i in content), default=-1)
            hits = [i for i in content if _column(lines[i]) == col and pattern.match(lines[i])]
        if len(hits) != 1:
            raise LookupError(f"{'.'.join(path)}: {len(hits)} lines hold {key}")
        at = hits[0]
    assert at is not None
    return at


def _set_value(lines: list[str], index: int, value: Any, quoted: bool = False) -> None:
    """Replace the value of the ``key: value`` at line ``index``, keeping a trailing comment; ``quoted``
    writes a string double-quoted even where it could be plain."""
    m = re.match(r"(\s*(?:- )?[\w-]+:\s*)(.*?)(\s+#.*)?$", lines[index])
    if m is None:
        raise LookupError(f"line {index + 1} is not a key: value line")
    lines[index] = m.group(1) + (json.dumps(value) if quoted else _scalar(value)) + (m.group(3) or "")


def _set_rules(lines: list[str], items: int, first_keys: tuple[str, ...], rules: list[tuple[str, str]]) -> None:
    """Rewrite the ``x-kubernetes-validations`` entries of the node at line ``items`` whose rule starts
    ``!has(self.<key>) || self.<key> ==``, for each of ``first_keys`` in that order."""
    block = _block(lines, _find(lines, ("x-kubernetes-validations",), below=items))
    for key, (rule, message) in zip(first_keys, rules, strict=True):
        hits = [i for i in block if re.match(rf'\s*- rule: "!has\(self\.{key}\) \|\| self\.{key} == ', lines[i])]
        if len(hits) != 1 or not re.match(r"\s*message: ", lines[hits[0] + 1]):
            raise LookupError(f"x-kubernetes-validations: {len(hits)} rules on {key} with a message below")
        _set_value(lines, hits[0], rule, quoted=True)
        _set_value(lines, hits[0] + 1, message, quoted=True)


def render_crd(text: str) -> str:
    """``text`` (the committed CRD) with every value the catalog owns set from the catalog."""
    lines = text.split("\n")
    for path, value in crd_values().items():
        _set_value(lines, _find(lines, path), value)
    _set_rules(lines, _find(lines, _STREAM_ITEMS), ("primaryKey", "cursorField"), stream_rules(catalog.SOURCE_TABLES))
    out = "\n".join(lines)
    roles = set(yaml.safe_load(out)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                ["properties"]["airflow"]["properties"]["connectionIds"]["properties"])
    if roles != set(catalog.DEFAULT_CONNECTION_IDS):
        raise LookupError(f"spec.airflow.connectionIds declares {sorted(roles)}, the catalog "
                          f"{sorted(catalog.DEFAULT_CONNECTION_IDS)}")
    return out


# ---------------------------------------------------------------- the README's contract block


def contract_json(value: Any, indent: int = 0) -> str:
    """The contract as the README shows it: JSON indented by two, a one-entry object on one line."""
    pad = "  " * indent
    if isinstance(value, dict) and len(value) == 1 and not isinstance(next(iter(value.values())), (dict, list)):
        return json.dumps(value)
    if isinstance(value, dict):
        items = [f'{pad}  {json.dumps(k)}: {contract_json(v, indent + 1)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        items = [f"{pad}  {contract_json(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)


def render_readme(text: str) -> str:
    """``text`` (operator/README.md) with its contract block set to the catalog's ``airflow.variables``."""
    if not CONTRACT_BLOCK.search(text):
        raise LookupError("operator/README.md has no <!-- contract:begin --> ```json``` <!-- contract:end --> block")
    return CONTRACT_BLOCK.sub(lambda m: m.group(1) + contract_json(catalog.VARIABLES) + "\n" + m.group(3), text)


# ---------------------------------------------------------------- command line


TARGETS: dict[Path, Callable[[str], str]] = {CRD_FILE: render_crd, README_FILE: render_readme}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retailflow_operator.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ from the catalog")
    args = parser.parse_args(argv)
    stale = []
    for path, render in TARGETS.items():
        if not path.is_file() or PACKAGE in path.parents:
            print(f"{path}: not found in a checkout (run from the repository)", file=sys.stderr)
            return 2
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
        state = "current" if new == text else "differs from the catalog" if args.check else "written"
        print(f"{path}: {state}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
