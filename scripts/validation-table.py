#!/usr/bin/env python3
"""One table over the seeds of a validation run (scripts/validate.sh): per model, each seed's
instances detected and false alerts on the benign traces, and their sums, the figures a recipe
change is decided on (docs/model/folds/README.md).

    scripts/validation-table.py --title base out/validation/base-s*/alerts/report.json

Reads the report.json files 'flowlstm-train evaluate --sensor' writes; prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _load(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"validation-table: {path}: not an alert-level evaluation report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("models"), dict):
        raise SystemExit(f"validation-table: {path}: not an alert-level evaluation report (no 'models')")
    return report


def table(reports: Sequence[tuple[str, dict[str, Any]]], title: str = "") -> list[str]:
    """Markdown lines: one row per model and run, then one row per model with the sums."""
    models = list(dict.fromkeys(m for _, r in reports for m in r["models"]))
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| model | run | families | instances (≤3 s) | false alerts | benign flows | false / 10k flows | collateral |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        total = dict.fromkeys(("det", "fast", "of", "false", "flows", "coll"), 0)
        for run, report in reports:
            m = report["models"].get(model)
            if m is None:
                lines.append(f"| {model} | {run} | not evaluated | | | | | |")
                continue
            got = {
                "det": m["instances_detected"],
                "fast": m["instances_detected_within_3s"],
                "of": m["instances_total"],
                "false": m["false_alerts_benign"],
                "flows": m["benign_flows"],
                "coll": m["collateral_alerts"],
            }
            for k, v in got.items():
                total[k] += v
            lines.append(_row(model, run, f"{m['families_detected']}/{m['families_total']}", got))
        lines.append(_row(f"**{model}**", f"**sum of {len(reports)}**", "", total))
    return lines


def _row(model: str, run: str, families: str, v: dict[str, int]) -> str:
    rate = f"{1e4 * v['false'] / v['flows']:.1f}" if v["flows"] else "–"
    return (
        f"| {model} | {run} | {families} | {v['det']}/{v['of']} ({v['fast']}) | {v['false']} | {v['flows']} "
        f"| {rate} | {v['coll']} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--title", default="", help="a heading for the table")
    p.add_argument("reports", nargs="+", type=Path, help="report.json of each run (RUN/alerts/report.json)")
    args = p.parse_args(argv)
    # a run is named by its directory: WORKDIR/LABEL-sSEED/alerts/report.json
    reports = [(path.resolve().parent.parent.name, _load(path)) for path in args.reports]
    print("\n".join(table(reports, args.title)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
