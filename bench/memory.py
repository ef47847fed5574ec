#!/usr/bin/env python3
"""Peak memory of the feature path under spoofed SYN floods (every packet a new flow).

Each flood runs twice in child processes: with the default settings (flow cap 1M, memory
budget features.memory-mb) and with the budget lifted (memory-mb 65536, the unbounded
baseline measured in the same run).  Prints peak RSS, flows tracked, shed and evicted, and
the ratio of the two peaks.

    .venv/sensor/bin/python bench/memory.py [--floods 50000:2000000,400000:2000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from throughput import build_flood  # noqa: E402

CHILD = """
import json, sys


def peak_rss_mb():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a big parent reads the parent's peak.
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) / 1024


from sensor.capture import read_packets
from sensor.flows import FlowConfig
from sensor.pipeline import FeaturePipeline, PipelineConfig
p = FeaturePipeline(PipelineConfig(flows=FlowConfig(memory_mb=int(sys.argv[2]))))
peak = windows = 0
for b in read_packets(sys.argv[1]):
    windows += sum(len(w) for w in p.push(b).windows)
    peak = max(peak, len(p.flows))
windows += sum(len(w) for w in p.finish().windows)
c = p.flows.counters
print(json.dumps({"rss_mb": peak_rss_mb(), "tracked": peak,
                  "shed": c.shed, "evicted": c.evicted, "windows": windows}))
"""


def run(path: Path, memory_mb: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(memory_mb)], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return json.loads(out.splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--floods", default="50000:2000000,400000:2000000", metavar="PPS:PACKETS,...")
    args = ap.parse_args()
    from sensor.settings import default

    budget = default("features.memory-mb")
    print(f"{'flood':>22}  {'settings':>16}  {'peak RSS':>9}  {'tracked':>9}  {'shed':>9}  {'evicted':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.floods.split(","):
            pps, packets = map(int, spec.split(":"))
            path = Path(tmp) / f"flood{pps}.pcap"
            build_flood(path, packets, pps)
            rows = {"default": run(path, budget), "unbounded": run(path, 65536)}
            for name, r in rows.items():
                label = f"memory-mb {budget}" if name == "default" else "memory-mb 65536"
                print(
                    f"{f'{pps} pps x {packets}':>22}  {label:>16}  {r['rss_mb']:7.0f} MB  {r['tracked']:9d}  "
                    f"{r['shed']:9d}  {r['evicted']:9d}"
                )
            print(f"{'':>22}  {'ratio':>16}  {rows['default']['rss_mb'] / rows['unbounded']['rss_mb']:8.2f}x")
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
