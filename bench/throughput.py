#!/usr/bin/env python3
"""Throughput of the sensor against tshark, NFStream and pyshark, measured in one run.

Builds ≥1M-packet pcaps from the real MAWI excerpt (with its injected scans and
floods), K copies, each copy's addresses XORed with its own constant (so copies
are distinct hosts but keep their prefix structure):

  overlay     the copies overlaid in time, a few microseconds apart: K times the
              excerpt's rate (~13k pps for 11 copies; ``--speedup`` multiplies it)
  sequential  the copies one after the other: the excerpt's own low rate for K
              times its length, where what the sensor pays per second dominates

Then, on each file:

  flowlstm   read → flows → aggregates → context → features → windows, one core
  e2e        ``flowlstm-sensor run --pcap FILE --eve FILE`` as a user runs it (start-up,
             model checks, scoring, thresholding, EVE), with the scoring thread off (0)
             and on (1: feature path and scoring on two cores; 2: the bundle's heads
             scored in parallel as well); with a gated supervised head (``docs/detection.md``),
             once more with 1 and 2 threads on a copy of the bundle without its gate
  tshark     tshark -T fields (the fields the sensor extracts), to /dev/null
  nfstream   NFStream's NFStreamer (statistical_analysis=True, no DPI), pip-installed in
             a throwaway venv (``--nfstream-venv DIR`` keeps and reuses one;
             ``--no-nfstream`` skips it)
  pyshark    pyshark FileCapture(keep_packets=False) on the first N packets

  stages     the e2e run once more under cProfile, scoring thread off: the share of
             its time each pipeline stage took (profiling slows Python calls, not
             the C and LiteRT inside them, so the shares lean towards Python stages)

and prints packets/s of each, the ratios, flowlstm's peak RSS, the stage breakdown
and the windows/s of each model head (LiteRT, one core, at the sensor's batch size).

``--flood PPS`` measures the worst case instead: a spoofed SYN flood at PPS
packets/s against one server, every packet from a random source and port, so
every packet is a new flow and a window to build (the MAWI mix has ~0.45 windows
per packet).

    .venv/sensor/bin/python bench/throughput.py [--packets 1000000] [--layout both] [--flood PPS]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor.model import DEFAULT_BUNDLE, METADATA_FILE  # noqa: E402

MAWI = ROOT / "tests" / "data" / "mawi" / "201911211400_headers.pcap"
TSHARK_FIELDS = [
    "frame.time_epoch",
    "frame.len",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.len",
    "ip.ttl",
    "ip.frag_offset",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.window_size_value",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
]


def build_pcap(src: Path, dst: Path, copies: int, speedup: float = 1.0, sequential: bool = False) -> int:
    """Write ``copies`` address-XORed copies of a pcap, replayed ``speedup`` times faster, overlaid
    a few microseconds apart or (``sequential``) one after the other; return packets written."""
    from sensor.capture import _walk

    raw = src.read_bytes()
    head = raw[:24]
    offs = np.empty(len(raw) // 16, np.int64)
    n, _, _ = _walk.walk_pcap(raw, 24, len(raw), 0, 1 << 20, offs)
    offs = offs[:n]
    buf = np.frombuffer(raw, np.uint8)
    caplen = buf[offs[:, None] + np.arange(8, 12)].copy().view("<u4")[:, 0].astype(np.int64)
    sec = buf[offs[:, None] + np.arange(0, 4)].copy().view("<u4")[:, 0].astype(np.int64)
    frac = buf[offs[:, None] + np.arange(4, 8)].copy().view("<u4")[:, 0].astype(np.int64)
    ns = sec * 1_000_000_000 + frac  # the excerpt has nanosecond timestamps
    recs = [raw[o : o + 16 + c] for o, c in zip(offs.tolist(), caplen.tolist(), strict=True)]
    out_ts, out_rec = [], []
    t0 = int(ns.min())
    # Sequential copies start a second after the one before ends, so no second holds two.
    shift = (int(ns.max()) - t0) // speedup + 1_000_000_000 if sequential else 3000
    for k in range(copies):
        key = (0x0A000000 + k * 0x00010001) if k else 0
        for t, r in zip(ns.tolist(), recs, strict=True):
            rec = bytearray(r)
            if k and len(rec) >= 16 + 34 and rec[16 + 12 : 16 + 14] == b"\x08\x00":
                for a in (16 + 26, 16 + 30):  # IPv4 source and destination
                    v = int.from_bytes(rec[a : a + 4], "big") ^ key
                    rec[a : a + 4] = v.to_bytes(4, "big")
            t2 = t0 + int((t - t0) / speedup) + k * int(shift)
            rec[0:4] = (t2 // 1_000_000_000).to_bytes(4, "little")
            rec[4:8] = (t2 % 1_000_000_000).to_bytes(4, "little")
            out_ts.append(t2)
            out_rec.append(bytes(rec))
    order = np.argsort(np.array(out_ts), kind="stable")
    with open(dst, "wb") as f:
        f.write(head)
        f.writelines(out_rec[i] for i in order)
    return len(out_rec)


def build_flood(dst: Path, packets: int, pps: int, seed: int = 1) -> int:
    """A spoofed TCP SYN flood to 10.0.0.1:80 at ``pps``: Ethernet/IPv4/TCP headers, one pcap."""
    rng = np.random.default_rng(seed)
    us = 1_600_000_000 * 10**6 + np.arange(packets, dtype=np.int64) * 10**6 // pps
    rec = np.zeros(
        packets,
        dtype=[
            ("sec", "<u4"),
            ("usec", "<u4"),
            ("incl", "<u4"),
            ("orig", "<u4"),
            ("eth", "u1", 14),
            ("ip", "u1", 20),
            ("tcp", "u1", 20),
        ],
    )
    rec["sec"], rec["usec"], rec["incl"], rec["orig"] = us // 10**6, us % 10**6, 54, 60
    rec["eth"][:, 12] = 0x08  # IPv4
    ip = rec["ip"]
    ip[:, 0], ip[:, 3], ip[:, 8], ip[:, 9] = 0x45, 40, 64, 6
    ip[:, 12:16] = (
        rng.integers(1 << 24, 0xE0000000, packets, dtype=np.uint32).astype(">u4").view(np.uint8).reshape(-1, 4)
    )
    ip[:, 16:20] = (10, 0, 0, 1)
    tcp = rec["tcp"]
    tcp[:, 0:2] = rng.integers(1024, 65536, packets, dtype=np.uint32).astype(">u2").view(np.uint8).reshape(-1, 2)
    tcp[:, 3], tcp[:, 12], tcp[:, 13] = 80, 0x50, 0x02  # port 80, 20-byte header, SYN
    with open(dst, "wb") as f:
        f.write(
            np.array([0xA1B2C3D4], "<u4").tobytes()
            + np.array([2, 4], "<u2").tobytes()
            + np.array([0, 0, 65535, 1], "<u4").tobytes()
        )
        f.write(rec.tobytes())
    return packets


def run_flowlstm(path: Path) -> dict:
    """The feature path in a child process, so its peak RSS is its own."""
    code = (
        "import sys,time,json,resource\n"
        "from sensor.capture import read_packets\n"
        "from sensor.pipeline import FeaturePipeline\n"
        "p=FeaturePipeline(); n=0; w=0; t=time.perf_counter()\n"
        f"for b in read_packets({str(path)!r}):\n"
        "    n+=len(b); w+=sum(len(x) for x in p.push(b).windows)\n"
        "w+=sum(len(x) for x in p.finish().windows)\n"
        "dt=time.perf_counter()-t\n"
        "print(json.dumps({'packets':n,'windows':w,'seconds':dt,"
        "'rss_mb':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_e2e(path: Path, threads: int, model: Path | None = None) -> dict:
    """The sensor command, pcap to EVE, in a child process: wall seconds and its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sensor.cli", "run", "--no-progress", "--no-announce"]
        cmd += ["--pcap", str(path), "--eve", str(Path(tmp) / "eve.json"), "--scoring-threads", str(threads)]
        cmd += ["--model", str(model)] if model else []
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"bench: the sensor failed: {err.strip().splitlines()[-1:]}")
        return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024}


# Where each stage's time is spent, as (stage, module file, functions): cumulative times of
# functions that do not call one another, so they add up.
STAGES = (
    ("read+decode", "sensor/capture/files.py", ("__iter__",)),
    ("flows", "sensor/flows.py", ("update", "expire")),
    ("aggregates", "sensor/aggregate/second.py", ("aggregate_second",)),
    ("aggregate match", "sensor/features.py", ("aggregate_match",)),
    ("context", "sensor/context.py", ("second_context", "deviation")),
    ("features", "sensor/features.py", ("flow_second_features",)),
    ("windows", "sensor/windows.py", ("push", "flush", "window_keys")),
    ("scoring", "sensor/model.py", ("score_all",)),
    ("alerts+EVE", "sensor/eve.py", ("alert_records", "to_lines")),
    ("output", "sensor/outputs.py", ("write",)),  # a file run writes EveFile directly
)


def run_stages(path: Path) -> dict:
    """The e2e run under cProfile (scoring thread off: the profiler sees one thread): seconds by stage."""
    with tempfile.TemporaryDirectory() as tmp:
        prof = Path(tmp) / "prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "sensor.cli", "run", "--no-progress"]
        cmd += ["--no-announce", "--pcap", str(path), "--eve", str(Path(tmp) / "eve.json"), "--scoring-threads", "0"]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]  # typeshed omits it
    out: dict[str, float] = {}
    for stage, module, funcs in STAGES:
        out[stage] = sum(v[3] for (f, _, fn), v in st.items() if f.endswith(module) and fn in funcs)
    out["total"] = max(v[3] for v in st.values())
    return out


def run_heads() -> list[tuple[str, float]]:
    """Windows/s of each head of the shipped bundle at the sensor's batch size, one core."""
    code = (
        "import json,time,numpy as np\n"
        "from sensor.model import ModelBundle,_SCORE_BATCH\n"
        "from sensor.features import SCHEMA\n"
        "b=ModelBundle(); buf=np.zeros((_SCORE_BATCH,3,SCHEMA.size),np.float32); r=[]\n"
        "for h in [g for h in b.heads for g in (h, h.gate) if g]:\n"
        "    h.run(buf); t=time.perf_counter()\n"
        "    for _ in range(200): h.run(buf)\n"
        "    r.append((h.name,200*_SCORE_BATCH/(time.perf_counter()-t)))\n"
        "print(json.dumps(r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return [(n, float(w)) for n, w in json.loads(out.stdout.strip().splitlines()[-1])]


def _gated() -> bool:
    return "gate" in json.loads((DEFAULT_BUNDLE / METADATA_FILE).read_text())


def _ungated(tmp: str) -> Path:
    """A copy of the shipped bundle without its gate: every window scored by the whole ensemble,
    as before gates (the baseline of the gate's gain)."""
    out = Path(tmp) / "ungated"
    if not out.exists():
        shutil.copytree(DEFAULT_BUNDLE, out)
        meta = json.loads((out / METADATA_FILE).read_text())
        del meta["gate"]
        (out / METADATA_FILE).write_text(json.dumps(meta))
    return out


def run_tshark(path: Path) -> dict:
    args = ["tshark", "-n", "-r", str(path), "-T", "fields"]
    for f in TSHARK_FIELDS:
        args += ["-e", f]
    t = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return {"seconds": time.perf_counter() - t}


NFSTREAM_CODE = """
import sys, time
from nfstream import NFStreamer
t = time.perf_counter()
flows = sum(1 for _ in NFStreamer(source=sys.argv[1], statistical_analysis=True, n_dissections=0, n_meters=1))
print(flows, time.perf_counter() - t)
"""


def run_nfstream(path: Path, venv: Path) -> dict | None:
    """NFStream on the same file in its own venv (created, with pip, if it has no python)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "nfstream"], capture_output=True, text=True)
        if pip.returncode != 0:
            print(f"bench: cannot install nfstream ({pip.stderr.strip().splitlines()[-1:]}); skipped", file=sys.stderr)
            return None
    out = subprocess.run([str(python), "-c", NFSTREAM_CODE, str(path)], capture_output=True, text=True, check=True)
    flows, seconds = out.stdout.split()
    return {"flows": int(flows), "seconds": float(seconds)}


def run_pyshark(path: Path, limit: int) -> dict:
    import pyshark

    cap = pyshark.FileCapture(str(path), keep_packets=False, use_ek=True)
    n = 0
    t = time.perf_counter()
    try:
        for pkt in cap:
            _ = pkt.frame_info  # touch the packet as a consumer would
            n += 1
            if n >= limit:
                break
    finally:
        cap.close()
    return {"packets": n, "seconds": time.perf_counter() - t}


def bench_file(pcap: Path, total: int, args: argparse.Namespace, tmp: str) -> None:
    """Every tool on one file; print the table, the ratios, RSS and the stage breakdown."""
    ours = run_flowlstm(pcap)
    e2e = {n: run_e2e(pcap, n) for n in (0, 1, 2)}
    ungated = {n: run_e2e(pcap, n, _ungated(tmp)) for n in (1, 2)} if _gated() else {}
    stages = run_stages(pcap)
    ts = run_tshark(pcap)
    nf = None
    if not args.no_nfstream:
        nf = run_nfstream(pcap, Path(args.nfstream_venv) if args.nfstream_venv else Path(tmp) / "nfstream-venv")
    ps = run_pyshark(pcap, args.pyshark_packets)

    pps = ours["packets"] / ours["seconds"]
    tpps = total / ts["seconds"]
    ppps = ps["packets"] / ps["seconds"]
    print(f"{'':10} {'packets':>9} {'seconds':>8} {'packets/s':>11}")
    print(f"{'flowlstm':10} {ours['packets']:9d} {ours['seconds']:8.2f} {pps:11,.0f}   ({ours['windows']} windows)")
    for n, r in e2e.items():
        print(f"{f'e2e, {n} thr':10} {total:9d} {r['seconds']:8.2f} {total / r['seconds']:11,.0f}   (pcap → EVE)")
    print(f"{'tshark':10} {total:9d} {ts['seconds']:8.2f} {tpps:11,.0f}")
    if nf:
        print(f"{'nfstream':10} {total:9d} {nf['seconds']:8.2f} {total / nf['seconds']:11,.0f}   ({nf['flows']} flows)")
    print(f"{'pyshark':10} {ps['packets']:9d} {ps['seconds']:8.2f} {ppps:11,.0f}")
    print(f"ratio flowlstm/tshark-fields: {pps / tpps:.1f}x   flowlstm/pyshark: {pps / ppps:.0f}x")
    sec = {n: r["seconds"] for n, r in e2e.items()}
    by = lambda ref: ", ".join(f"{ref / sec[n]:.1f}x ({n} thr)" for n in sorted(sec, reverse=True))  # noqa: E731
    print(f"ratio e2e/tshark-fields: {by(ts['seconds'])}")
    print(f"ratio e2e/pyshark: {by(total / ppps)}")
    if nf:
        print(f"ratio vs nfstream: feature path {nf['seconds'] / ours['seconds']:.1f}x, e2e {by(nf['seconds'])}")
    print(f"scoring threads' speed-up, end to end: {by(sec[0])}")
    if ungated:
        gain = ", ".join(f"{r['seconds'] / sec[n]:.2f}x ({n} thr)" for n, r in ungated.items())
        print(f"the supervised head's gate, end to end (ungated seconds / gated): {gain}")
    rss = ", ".join(f"{r['rss_mb']:.0f} MiB ({n} thr)" for n, r in e2e.items())
    print(f"flowlstm peak RSS: {ours['rss_mb']:.0f} MiB (feature path); e2e {rss}")
    whole = stages.pop("total")
    parts = ", ".join(f"{k} {v / whole:.0%}" for k, v in stages.items())
    rest = whole - sum(stages.values())
    print(f"stages (e2e, 0 thr, under cProfile, {whole:.1f} s): {parts}, start-up and rest {rest / whole:.0%}")
    if stages["scoring"] > 0:
        print(f"scoring in the e2e run: {ours['windows'] / stages['scoring']:,.0f} windows/s (every head)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000, help="at least this many packets (default %(default)s)")
    ap.add_argument(
        "--pyshark-packets",
        type=int,
        default=20_000,
        help="pyshark is timed on this many packets (default %(default)s)",
    )
    ap.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="replay the overlaid copies this many times faster (default %(default)s: the excerpt's "
        "own ~13k pps for 11 copies; 10 gives ~130k pps, a full MAWI link's rate)",
    )
    ap.add_argument(
        "--layout",
        choices=("overlay", "sequential", "both"),
        default="both",
        help="the copies overlaid in time, one after the other, or both files (default %(default)s)",
    )
    ap.add_argument("--keep", metavar="DIR", help="keep the generated pcaps in DIR")
    ap.add_argument("--flood", type=int, metavar="PPS", help="a spoofed SYN flood at PPS instead of the MAWI mix")
    ap.add_argument("--nfstream-venv", metavar="DIR", help="NFStream's venv: kept, and reused when it exists")
    ap.add_argument("--no-nfstream", action="store_true", help="leave NFStream out")
    args = ap.parse_args()
    if not shutil.which("tshark"):
        print("bench: tshark is not installed (scripts/setup.sh sensor installs it)", file=sys.stderr)
        return 69

    with tempfile.TemporaryDirectory() as tmp:
        from sensor.capture import CaptureReader

        if args.flood:
            t = time.perf_counter()
            pcap = Path(args.keep or tmp) / f"synflood_{args.flood}pps.pcap"
            total = build_flood(pcap, args.packets, args.flood)
            print(f"built {pcap.name}: {total} spoofed SYNs at {args.flood} pps in {time.perf_counter() - t:.1f} s")
            bench_file(pcap, total, args, tmp)
        else:
            n_src = sum(len(b) for b in CaptureReader(MAWI))
            copies = -(-args.packets // n_src)
            for layout in ("overlay", "sequential") if args.layout == "both" else (args.layout,):
                t = time.perf_counter()
                seq = layout == "sequential"
                speedup = 1.0 if seq else args.speedup
                pcap = Path(args.keep or tmp) / f"mawi_x{copies}_{layout}_s{speedup:g}.pcap"
                total = build_pcap(MAWI, pcap, copies, speedup, sequential=seq)
                print(
                    f"\n== {layout}: built {pcap.name}: {total} packets ({copies} copies of {n_src}) "
                    f"in {time.perf_counter() - t:.1f} s"
                )
                bench_file(pcap, total, args, tmp)
    print("\nmodel heads (LiteRT, one core, batch of the sensor):")
    for name, wps in run_heads():
        print(f"  {name:12} {wps:11,.0f} windows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
