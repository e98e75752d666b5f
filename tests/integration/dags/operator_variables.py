"""Prints, as JSON, the Airflow variables the operator's own builder writes for a RetailPipeline.

Run with the operator project's Python (``operator/.venv/bin/python``), so the DAG tests read what
the operator really writes, from its code in its environment:

    python operator_variables.py <spec.yaml> [--engine airbyte|direct] [--prefix P] [--ids ids.json]
        [--set dotted.key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "operator"))
from retailflow_operator import airflow_variables  # noqa: E402
from retailflow_operator.spec_model import parse  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("--engine")
    p.add_argument("--prefix")
    p.add_argument("--ids", help="JSON file: {connections: {role: id}, sources: {...}, destinations: {...}}")
    p.add_argument("--set", action="append", default=[], help="dotted.key=value (JSON value, else a string)")
    args = p.parse_args()
    doc = yaml.safe_load(Path(args.spec).read_text())
    spec = doc.get("spec", doc)
    if args.engine:
        spec["engine"] = args.engine
    if args.prefix:
        spec.setdefault("airflow", {})["variablePrefix"] = args.prefix
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = spec
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    ids = json.loads(Path(args.ids).read_text()) if args.ids else None
    meta = doc.get("metadata", {})
    out = airflow_variables.build_variables(meta.get("namespace", "retailflow"), meta.get("name", "retail"), parse(spec), ids)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
