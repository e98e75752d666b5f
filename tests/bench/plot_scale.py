"""Draw docs/bench-scale.png from bench_scale.py's CSV: seconds and peak memory of each step against
the number of orders, both axes logarithmic.

    make bench-scale-plot            # .bench/scale.csv -> docs/bench-scale.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: (CSV column prefix, label)
STEPS = [
    ("generator", "generator (seed)"),
    ("ingest_full", "ingestion, full"),
    ("ingest_incr", "ingestion, 1% incremental"),
    ("dbt_build", "dbt build"),
    ("audit", "audit (MySQL against the marts)"),
    ("dag", "retail_pipeline in Airflow"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=REPO / ".bench" / "scale.csv")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench-scale.png")
    args = ap.parse_args()
    with args.csv.open() as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["orders"]))
    orders = [int(r["orders"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for prefix, label in STEPS:
        # .get: a CSV written before a step was measured has no column for it
        seconds = [float(r.get(f"{prefix}_run_s" if prefix == "dag" else f"{prefix}_s") or "nan") for r in rows]
        memory = [float(r.get(f"{prefix}_rss_mb") or "nan") for r in rows]
        left.plot(orders, seconds, marker="o", label=label)
        right.plot(orders, memory, marker="o", label=label + (" (summed RSS)" if prefix == "dag" else ""))
    right.plot(orders, [float(r["warehouse_mb"]) for r in rows], marker="s", linestyle="--", color="grey",
               label="warehouse on disk (pg_database_size)")
    for ax, title, unit in ((left, "Time per step", "seconds"), (right, "Peak memory per step", "MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("orders seeded")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    loads = ", ".join(f"{r['size']}: {r['load_before'].split()[0]}" for r in rows)
    fig.suptitle(f"RetailFlow pipeline by size (make bench-scale; 2 shared cores, 1-min load before each size: {loads})",
                 fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"plot_scale: wrote {args.out}")


if __name__ == "__main__":
    main()
