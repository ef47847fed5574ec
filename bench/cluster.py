#!/usr/bin/env python3
"""The trainer on a standalone Spark cluster: one worker against two, measured in one run.

Builds one labelled trace the way the tests do (the MAWI excerpt with a scan and a flood
injected, MAWILab-format labels) and K copies of it under their own names, then, on a
standalone cluster of 1 and of 2 one-core workers started from the installed pyspark
(bench/standalone.py):

  features   ``flowlstm-train features`` over the K traces (one task per trace)
  train      ``flowlstm-train train --epochs 1``: the supervised LSTM's epoch time on
             Elephas, the windows it trained on, and the driver's peak RSS

and prints the times and the 1→2 worker ratios.  Then the proof that the driver is not the
ceiling: the extracted windows are replicated, each copy's addresses XORed with its own
number (new hosts, new flows, the same traffic), until they are ``--scale`` times
``spark.driver.memory`` of float32 features, and ``train`` runs on all of them (no caps, the
two heads, one epoch) on the two-worker cluster: the driver's peak RSS (its Python and its
JVM, the larger), windows/s of the supervised epoch, and the wall time.

    .venv/trainer/bin/python bench/cluster.py [--traces 4] [--max-benign 3000] [--max-anomalous 600]
        [--driver-memory 1g] [--scale 3]   (--scale 0: the scaling part only)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from standalone import ran_tasks, standalone_cluster  # noqa: E402

from sensor.features import SCHEMA  # noqa: E402

DATA = ROOT / "tests" / "data"
TRAIN = [sys.executable, "-m", "trainer.cli"]


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str, float]:
    """Run a trainer command: wall seconds, its stderr, and the peak RSS (MiB) of it and its children."""
    t = time.perf_counter()
    proc = subprocess.Popen([*TRAIN, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        # the Python error, not the JVM's stack frames after it
        lines = [ln for ln in err.strip().splitlines() if not ln.lstrip().startswith(("at ", "..."))]
        raise SystemExit(f"bench: {' '.join(args[:1])} failed:\n" + "\n".join(lines[-12:]))
    return seconds, err, usage.ru_maxrss / 1024


def build_traces(tmp: Path, k: int) -> tuple[list[Path], list[Path]]:
    """K copies of one injected, labelled trace (mix_i.pcap with its labels mix_i.xml)."""
    base = tmp / "mix"
    inject = ["inject", "--background", str(DATA / "mawi" / "201911211400_headers.pcap"), "--seed", "5"]
    inject += ["--attack", f"{DATA / 'attacks' / 'zmap_tcp_5k.pcapng'}@40:0.01:ntscSYN:src=192.168.181.131"]
    inject += ["--attack", f"{DATA / 'attacks' / 'pkt.TCP.synflood.spoofed.pcap'}@45:1:DDoSSYN:dst=10.10.10.10"]
    _run([*inject, "--out-pcap", f"{base}.pcap", "--out-labels", str(base)], dict(os.environ))
    pcaps, labels = [], []
    for i in range(k):
        pcaps.append(tmp / f"mix_{i}.pcap")
        labels.append(tmp / f"mix_{i}.xml")
        shutil.copy(f"{base}.pcap", pcaps[-1])
        shutil.copy(f"{base}.xml", labels[-1])
    return pcaps, labels


def _xor(addresses: list[str], k: int) -> list[str]:
    """Each address with a copy number XORed into its host part: IPv4 bits 8-15, IPv6 bits 16-31."""
    out = {}
    for a in set(addresses):
        ip = ipaddress.ip_address(a)
        out[a] = str(ipaddress.ip_address(int(ip) ^ (k << (8 if ip.version == 4 else 16))))
    return [out[a] for a in addresses]


def replicate(feat: Path, big: Path, target_bytes: int) -> tuple[int, int]:
    """Copies of every extracted trace (``trace=NAME_xK``) until their windows' features reach
    ``target_bytes`` of float32; returns (copies, windows)."""
    parts = sorted(feat.glob("trace=*/part-*.parquet"))
    tables = [(p, pq.read_table(p)) for p in parts]
    per_copy = sum(t.num_rows for _, t in tables)
    copies = max(1, -(-target_bytes // (per_copy * 3 * SCHEMA.size * 4)))
    for k in range(1, copies + 1):
        for p, t in tables:
            for col in ("src", "dst"):
                i = t.schema.get_field_index(col)
                t = t.set_column(i, col, pa.array(_xor(t.column(col).to_pylist(), k), pa.string()))
            d = big / f"{p.parent.name}_x{k}"
            d.mkdir(parents=True)
            pq.write_table(t, d / p.name, compression="zstd")
    return copies, copies * per_copy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=4, help="copies of the labelled trace (default %(default)s)")
    ap.add_argument("--max-benign", type=int, default=3000, help="benign windows kept per trace (default %(default)s)")
    ap.add_argument(
        "--max-anomalous", type=int, default=600, help="anomalous windows kept per trace (default %(default)s)"
    )
    ap.add_argument("--driver-memory", default="1g", help="spark.driver.memory (default %(default)s)")
    ap.add_argument(
        "--scale",
        type=float,
        default=3.0,
        help="windows to train on, in driver memories (default %(default)s; 0: skip the big run)",
    )
    args = ap.parse_args()
    if not shutil.which("java"):
        print("bench: Java is not installed (scripts/setup.sh trainer installs it)", file=sys.stderr)
        return 69
    env = dict(os.environ, FLOWLSTM_SPARK_DRIVER_MEMORY=args.driver_memory)
    rows = {}
    big_row: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t = time.perf_counter()
        pcaps, labels = build_traces(tmp, args.traces)
        mib = pcaps[0].stat().st_size >> 20
        print(f"built {len(pcaps)} labelled traces of {mib} MiB in {time.perf_counter() - t:.1f} s")
        for n in (1, 2):
            (tmp / f"c{n}").mkdir()
            with standalone_cluster(n, tmp / f"c{n}") as (master, work):
                feat, run = tmp / f"feat{n}", tmp / f"run{n}"
                fargs = ["features", "--pcap", *map(str, pcaps), "--labels", *map(str, labels), "--out", str(feat)]
                f_s, _, _ = _run([*fargs, "--master", master], env)
                targs = ["train", "--features", str(feat), "--out", str(run), "--epochs", "1", "--no-family-holdout"]
                targs += [
                    "--max-benign-per-trace",
                    str(args.max_benign),
                    "--max-anomalous-per-trace",
                    str(args.max_anomalous),
                ]
                targs += ["--partitions", str(2 * n)]
                t_s, err, rss = _run([*targs, "--master", master], env)
                # The last split's supervised epoch (labels read "[time lstm]", "[final lstm]", ...).
                epochs = re.findall(r"\[[^\]]*\blstm\] epoch 1/1 \(([\d.]+) s, ([\d,]+) windows/s\)", err)
                epoch = epochs[-1] if epochs else None
                report = json.loads((run / "report.json").read_text())
                rows[n] = {
                    "features": f_s,
                    "train": t_s,
                    "epoch": float(epoch[0]) if epoch else float("nan"),
                    "wps": float(epoch[1].replace(",", "")) if epoch else float("nan"),
                    "windows": report["dataset"]["windows"],
                    "rss": rss,
                    "tasks": [ran_tasks(w) for w in work],
                }
                if n == 2 and args.scale > 0:
                    big = tmp / "big"
                    target = int(args.scale * _bytes(args.driver_memory))
                    copies, windows = replicate(feat, big, target)
                    gib = windows * 3 * SCHEMA.size * 4 / 2**30
                    print(f"replicated the windows {copies}x: {windows:,} windows, {gib:.2f} GiB of float32")
                    bargs = ["train", "--features", str(big), "--out", str(tmp / "bigrun"), "--epochs", "1"]
                    bargs += ["--no-family-holdout", "--no-baselines", "--partitions", "4", "--master", master]
                    b_s, err, b_rss = _run(bargs, env)
                    epochs = re.findall(r"\[held out lstm\] epoch 1/1 \(([\d.]+) s, ([\d,]+) windows/s\)", err)
                    big_row = {"windows": windows, "gib": gib, "train": b_s, "rss": b_rss, "epoch": epochs[-1]}
    one, two = rows[1], rows[2]
    print(f"{'workers':>8} {'features s':>11} {'train s':>8} {'lstm epoch s':>13} {'windows/s':>10} {'driver RSS':>11}")
    for n, r in rows.items():
        print(
            f"{n:8d} {r['features']:11.1f} {r['train']:8.1f} {r['epoch']:13.1f} {r['wps']:10,.0f} "
            f"{r['rss']:8.0f} MiB   tasks per worker {r['tasks']}"
        )
    ratio = {k: one[k] / two[k] for k in ("features", "epoch")}
    print(f"scaling 1→2 workers: features {ratio['features']:.2f}x, lstm epoch {ratio['epoch']:.2f}x")
    size = one["windows"] * 3 * SCHEMA.size * 4 / 2**20
    print(
        f"capped run: {one['windows']:,} windows ({size:.0f} MiB of float32) from {args.traces} traces; "
        f"driver peak RSS {max(one['rss'], two['rss']):.0f} MiB"
    )
    b = big_row
    if not b:
        return 0
    print(
        f"big run, 2 workers: {b['windows']:,} windows ({b['gib']:.2f} GiB of float32, "
        f"{b['gib'] * 2**30 / _bytes(args.driver_memory):.1f}x spark.driver.memory {args.driver_memory}): "
        f"train {b['train']:.0f} s, supervised epoch {b['epoch'][0]} s at {b['epoch'][1]} windows/s, "
        f"driver peak RSS {b['rss']:.0f} MiB"
    )
    return 0


def _bytes(size: str) -> int:
    """``1g``, ``512m`` → bytes, as Spark reads memory sizes."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    return int(float(size[:-1]) * units[size[-1].lower()]) if size[-1].lower() in units else int(size)


if __name__ == "__main__":
    sys.exit(main())
