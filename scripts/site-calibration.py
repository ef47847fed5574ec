#!/usr/bin/env python3
"""Site calibration (`flowlstm-sensor calibrate`) measured on networks the models never saw.

Each benign source is a site.  Its benign corpus traces are cut at the middle of their time
span; the first halves calibrate a copy of each model bundle for that source; the real sensor
then runs the bundle and its calibrated copy on the source's benign traces and on the
families injected into its backgrounds (`flowlstm-train evaluate --sensor`).  False alerts
are counted on the second halves only (alerts of windows centred there, per 10,000 flows the
sensor counts on the second halves alone); instances on the mixes, whose attacks no
calibration saw.

    .venv/trainer/bin/python scripts/site-calibration.py --corpus C --sources S[,S...] \\
        --families F[,F...] --out DIR NAME=BUNDLE [NAME=BUNDLE ...]
    .venv/trainer/bin/python scripts/site-calibration.py --sum DIR/summary.json [...]

The first form writes DIR/summary.json and prints its table; the second sums several runs
(seeds) into one.  The validation network of `scripts/validate.sh` (stop 38):
    for s in 1 2 3 4; do .venv/trainer/bin/python scripts/site-calibration.py \\
        --corpus W/corpus --sources iot-sentinel \\
        --families scan,dns-tunnel,teardrop,dhcp-flood,c2-beacon,reflection,ipv6-attack \\
        --out W/base-s$s/site shipped=W/base-s$s/bundle; done
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.fieldtest import read_eve  # noqa: E402

PY = str(ROOT / ".venv" / "trainer" / "bin" / "python")
SENSOR = str(ROOT / ".venv" / "sensor" / "bin" / "flowlstm-sensor")
COLUMNS = ("detected", "instances", "false", "flows", "collateral")


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def first_ts(pcap: Path) -> float:
    out = subprocess.run(["capinfos", "-a", "-S", "-T", "-r", str(pcap)], check=True, capture_output=True, text=True)
    return float(out.stdout.split("\t")[1])


def halves(corpus: Path, source: str, out: Path) -> list[tuple[str, float, Path, Path]]:
    """(trace name, mid time, first half, second half) of each benign trace of ``source``."""
    meta = json.loads((corpus / "corpus.json").read_text())
    got = []
    out.mkdir(parents=True, exist_ok=True)
    for t in meta["traces"]:
        if t["kind"] != "benign" or t["source"] != source:
            continue
        pcap = corpus / t["path"]
        mid = first_ts(pcap) + t["seconds"] / 2
        a, b = out / f"{t['name']}-first.pcap", out / f"{t['name']}-second.pcap"
        run(["editcap", "-B", f"{mid:.6f}", str(pcap), str(a)])
        run(["editcap", "-A", f"{mid:.6f}", str(pcap), str(b)])
        got.append((t["name"], mid, a, b))
    return got


def measure(corpus: Path, source: str, families: str, models: dict[str, str], out: Path) -> dict[str, dict[str, int]]:
    """Each model's and its calibrated copy's counts on ``source``."""
    parts = halves(corpus, source, out / "halves")
    if not parts:
        raise SystemExit(f"{source}: no benign traces in {corpus}")
    pairs = []
    for name, bundle in models.items():
        site = out / f"{name}-site"
        run(
            [SENSOR, "calibrate", "--no-progress", "--model", bundle, "--out", str(site)]
            + ["--pcap", *[str(a) for _, _, a, _ in parts]]
        )
        pairs += ["--model", f"{name}={bundle}", "--model", f"{name}+site={site}"]
    run(
        [PY, "-m", "trainer.cli", "evaluate", "--sensor", "--corpus", str(corpus), "--out", str(out / "alerts")]
        + pairs
        + ["--sources", source, "--families", families]
    )
    report = json.loads((out / "alerts" / "report.json").read_text())
    flows = 0
    for name, _, _, b in parts:
        eve = out / f"{name}-second.eve"
        run([SENSOR, "run", "--no-progress", "--no-announce", "--pcap", str(b), "--eve", str(eve)])
        flows += read_eve(eve)[1]
    counts = {}
    for model in report["models"]:
        false = 0
        for name, mid, _, _ in parts:
            alerts, _ = read_eve(out / "alerts" / "eve" / model / f"{name}.json")
            false += sum(a.t >= mid for a in alerts)
        m = report["models"][model]
        counts[model] = {
            "detected": m["instances_detected"],
            "instances": m["instances_total"],
            "false": false,
            "flows": flows,
            "collateral": m["collateral_alerts"],
        }
    return counts


def add(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for model, c in more.items():
        row = into.setdefault(model, dict.fromkeys(COLUMNS, 0))
        for k in COLUMNS:
            row[k] += c[k]


def table(rows: dict[str, dict[str, int]], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| model | instances | false on the second halves | flows | false / 10k | collateral |",
        "|---|---|---|---|---|---|",
    ]
    for model, r in rows.items():
        rate = 1e4 * r["false"] / r["flows"] if r["flows"] else float("nan")
        lines.append(
            f"| {model} | {r['detected']}/{r['instances']} | {r['false']} | {r['flows']} | {rate:.1f} "
            f"| {r['collateral']} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path)
    p.add_argument("--sources", help="benign sources, each calibrated on its own")
    p.add_argument("--families", help="families injected into their backgrounds, for the instances")
    p.add_argument("--out", type=Path)
    p.add_argument("--sum", nargs="+", type=Path, metavar="SUMMARY", help="sum these summary.json files")
    p.add_argument("models", nargs="*", metavar="NAME=BUNDLE")
    a = p.parse_args()
    rows: dict[str, dict[str, int]] = {}
    if a.sum:
        for path in a.sum:
            add(rows, json.loads(path.read_text())["total"])
        print(table(rows, f"sum of {len(a.sum)}: {', '.join(str(s) for s in a.sum)}"))
        return 0
    if not (a.corpus and a.sources and a.families and a.out and a.models):
        p.error("--corpus, --sources, --families, --out and at least one NAME=BUNDLE are needed")
    models = dict(m.split("=", 1) for m in a.models)
    summary: dict[str, Any] = {"sources": {}}
    for source in a.sources.split(","):
        counts = measure(a.corpus, source, a.families, models, a.out / source)
        summary["sources"][source] = counts
        add(rows, counts)
    summary["total"] = rows
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table(rows, f"{a.out}: {a.sources}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
