#!/usr/bin/env python3
"""Site calibration (`flowlstm-sensor calibrate`) measured on the validation network.

For each seed's run of `scripts/validate.sh` (WORKDIR/LABEL-sSEED, a bundle that never saw
iot-sentinel), as a sensor on those networks would be calibrated: each iot-sentinel benign
trace is cut at the middle of its time span; the first halves calibrate a copy of the bundle
(one calibration over the three site backgrounds); the real sensor then runs the bundle and
the calibrated copy on every iot-sentinel benign trace and on the trained families injected
into its backgrounds.  False alerts are counted on the second halves only (alerts of windows
centred there, per 10,000 flows the sensor counts on the second half alone); instances on the
mixes (whose attacks no calibration saw).

    .venv/trainer/bin/python scripts/site-calibration.py WORKDIR LABEL "SEEDS"

writes WORKDIR/LABEL-sSEED/site/ and prints one Markdown table over the seeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.fieldtest import read_eve  # noqa: E402

FAMILIES = "scan,dns-tunnel,teardrop,dhcp-flood,c2-beacon,reflection,ipv6-attack"
PY = str(ROOT / ".venv" / "trainer" / "bin" / "python")
SENSOR = str(ROOT / ".venv" / "sensor" / "bin" / "flowlstm-sensor")


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def first_ts(pcap: Path) -> float:
    out = subprocess.run(["capinfos", "-a", "-S", "-T", "-r", str(pcap)], check=True, capture_output=True, text=True)
    return float(out.stdout.split("\t")[1])


def halves(corpus: Path, out: Path) -> list[tuple[str, float, Path, Path]]:
    """(trace name, mid time, first half, second half) of each iot-sentinel benign trace."""
    meta = json.loads((corpus / "corpus.json").read_text())
    got = []
    out.mkdir(parents=True, exist_ok=True)
    for t in meta["traces"]:
        if t["kind"] != "benign" or t["source"] != "iot-sentinel":
            continue
        pcap = corpus / t["path"]
        mid = first_ts(pcap) + t["seconds"] / 2
        a, b = out / f"{t['name']}-first.pcap", out / f"{t['name']}-second.pcap"
        run(["editcap", "-B", f"{mid:.6f}", str(pcap), str(a)])
        run(["editcap", "-A", f"{mid:.6f}", str(pcap), str(b)])
        got.append((t["name"], mid, a, b))
    return got


def seed_row(corpus: Path, run_dir: Path) -> dict[str, dict[str, int]]:
    site = run_dir / "site"
    parts = halves(corpus, site / "halves")
    run(
        [SENSOR, "calibrate", "--no-progress", "--model", str(run_dir / "bundle"), "--out", str(site / "bundle")]
        + ["--pcap", *[str(a) for _, _, a, _ in parts]]
    )
    run(
        [PY, "-m", "trainer.cli", "evaluate", "--sensor", "--corpus", str(corpus), "--out", str(site / "alerts")]
        + ["--model", f"shipped={run_dir / 'bundle'}", "--model", f"site={site / 'bundle'}"]
        + ["--sources", "iot-sentinel", "--families", FAMILIES]
    )
    report = json.loads((site / "alerts" / "report.json").read_text())
    flows = 0
    for name, _, _, b in parts:
        run([SENSOR, "run", "--no-progress", "--no-announce", "--pcap", str(b), "--eve", str(site / f"{name}.eve")])
        flows += read_eve(site / f"{name}.eve")[1]
    row = {}
    for model in ("shipped", "site"):
        false = 0
        for name, mid, _, _ in parts:
            alerts, _ = read_eve(site / "alerts" / "eve" / model / f"{name}.json")
            false += sum(a.t >= mid for a in alerts)
        m = report["models"][model]
        row[model] = {
            "detected": m["instances_detected"],
            "instances": m["instances_total"],
            "false": false,
            "flows": flows,
        }
    return row


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    work, label, seeds = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split()
    corpus = work / "corpus"
    rows = {s: seed_row(corpus, work / f"{label}-s{s}") for s in seeds}
    print("| seed | bundle: instances | false, second halves (/10k) | calibrated: instances | false (/10k) |")
    print("|---|---|---|---|---|")
    tot = {m: [0, 0, 0, 0] for m in ("shipped", "site")}
    for s, row in rows.items():
        cells = []
        for m in ("shipped", "site"):
            r = row[m]
            for i, k in enumerate(("detected", "instances", "false", "flows")):
                tot[m][i] += r[k]
            cells += [
                f"{r['detected']}/{r['instances']}",
                f"{r['false']} ({1e4 * r['false'] / max(r['flows'], 1):.1f})",
            ]
        print(f"| {s} | " + " | ".join(cells) + " |")
    cells = []
    for m in ("shipped", "site"):
        d, n, f, fl = tot[m]
        cells += [f"{d}/{n}", f"{f} ({1e4 * f / max(fl, 1):.1f})"]
    print("| sum | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
