#!/usr/bin/env python3
"""One long trace cut into time ranges (``features --split``) against the same trace in one task.

Builds a MAWI-like 15-minute ``.pcap.gz`` from the real excerpt: ``--overlay`` address-XORed
copies overlaid in time (a denser link), then ``--segments`` of those one after the other,
each with its own addresses (bench/throughput.py's builder).  Then, on ``--master``:

  uncut   ``flowlstm-train features --split 0``: the whole trace in one task
  cut     ``flowlstm-train features --split S --warm-up W`` for each S:W of ``--cuts``

and prints each run's wall time and its ratio to the uncut one, and what the cut changed:
the share of flow-seconds windowed exactly once, the share of windows bit-equal to the
uncut run's (matched by 5-tuple, flow start, second and totals), and the mean and largest
absolute difference of the state features (host history, link baseline) of the windows
that match.  Decompressing the prefix before a range is part of every range's cost.

    .venv/trainer/bin/python bench/split.py [--overlay 4] [--segments 12] [--cuts 300:300,300:120]
        [--master local[*]]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.lib.recfunctions import repack_fields

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from throughput import MAWI, build_pcap  # noqa: E402

from sensor.addresses import parse_addresses  # noqa: E402
from sensor.features import CONTEXT_FEATURES, SCHEMA  # noqa: E402
from sensor.history import HISTORY_FEATURES  # noqa: E402
from sensor.parquet import read_windows  # noqa: E402

KEY = ["start_ts", "src", "dst", "sport", "dport", "proto", "sec", "total_pkts", "total_bytes"]


def windows(feat: Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys as one void per window, x) of every part of the one trace under ``feat``, sorted by key."""
    keys, xs = [], []
    for part in sorted(feat.glob("trace=*/part-*.parquet")):
        w = read_windows(str(part))
        cols = {c: w.table.column(c).to_numpy(zero_copy_only=False) for c in KEY}
        dtype = [(c, (np.uint8, 16)) if c in ("src", "dst") else (c, np.asarray(cols[c]).dtype) for c in KEY]
        rec = np.zeros(len(w.x), dtype)
        for c in KEY:
            rec[c] = parse_addresses(cols[c]) if c in ("src", "dst") else cols[c]
        keys.append(repack_fields(rec).view(f"V{rec.dtype.itemsize}"))
        xs.append(w.x)
    k, x = np.concatenate(keys), np.concatenate(xs)
    order = np.argsort(k)
    return k[order], x[order]


def features(pcap: Path, out: Path, master: str, *extra: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "trainer.cli", "features", "--pcap", str(pcap), "--out", str(out), "--master", master]
        + list(extra),
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overlay", type=int, default=4)
    ap.add_argument("--segments", type=int, default=12)
    ap.add_argument("--cuts", default="300:300,300:120", help="SPLIT:WARM-UP pairs, comma-separated")
    ap.add_argument("--master", default="local[*]")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flowlstm-split-"))
    try:
        dense = tmp / "dense.pcap"
        n = build_pcap(MAWI, dense, args.overlay)
        long_pcap = tmp / "long.pcap"
        n = build_pcap(dense, long_pcap, args.segments, sequential=True)
        gz = tmp / "long.pcap.gz"
        with open(long_pcap, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        size = os.path.getsize(long_pcap)
        long_pcap.unlink()
        dense.unlink()
        print(
            f"trace: {n:,} packets, {size / 2**20:.0f} MiB ({gz.stat().st_size / 2**20:.0f} MiB gzipped), "
            f"{args.segments} x 78 s, master {args.master}"
        )
        t_uncut = features(gz, tmp / "uncut", args.master, "--split", "0")
        ref_k, ref_x = windows(tmp / "uncut")
        print(f"uncut              {t_uncut:7.1f} s   {len(ref_k):,} windows")
        state = [SCHEMA.index(c) for c in HISTORY_FEATURES + CONTEXT_FEATURES]
        for pair in args.cuts.split(","):
            split, warm = pair.split(":")
            out = tmp / f"cut-{split}-{warm}"
            t = features(gz, out, args.master, "--split", split, "--warm-up", warm)
            k, x = windows(out)
            parts = len(list(out.glob("trace=*/part-*.parquet")))
            mine, theirs = np.isin(k, ref_k), np.isin(ref_k, k)
            equal = (x[mine] == ref_x[theirs]).all(axis=(1, 2))
            diff = np.abs(x[mine][:, :, state] - ref_x[theirs][:, :, state])
            print(
                f"split {split:>4} warm {warm:>4} {t:7.1f} s   x{t_uncut / t:4.2f} of uncut   {parts} parts   "
                f"windows {len(k) / len(ref_k):.4f} of uncut   same flow {theirs.mean():.4f}   "
                f"bit-equal {equal.sum() / len(ref_k):.4f}   state |diff| mean {diff.mean():.2e} max {diff.max():.2e}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
