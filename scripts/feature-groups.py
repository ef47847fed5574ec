#!/usr/bin/env python3
"""Which groups of features make a bundle's supervised head fire, on benign windows and on
attack windows: the analysis behind the models being trained without the link's composition
(docs/detection.md, docs/model/folds/README.md).

For every group of the feature schema, the windows the supervised head scores at or above its
threshold get that group set to its training mean (the bundle's normalization) in every
present second and are scored again: a group that takes many benign windows below the
threshold and few attack windows is one that tells networks apart rather than attacks.  Then
the threshold-free view: the share of each attack family's windows the head ranks above the
benign flows' top scores at 1, 5 and 20 false flows in 10,000.

Benign windows are the label-0 windows of the --benign traces, attack windows the labelled
ones of the --attacks traces (their family is the part of the trace name before '--').
Run in the sensor venv:

    .venv/sensor/bin/python scripts/feature-groups.py --bundle RUN/bundle --features FEAT \\
        --benign site-iot-sentinel-1,site-iot-sentinel-2 --attacks scan--site-iot-sentinel-1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor.errors import FlowlstmError  # noqa: E402
from sensor.features import LINK_COMPOSITION, SCHEMA  # noqa: E402
from sensor.model import ModelBundle  # noqa: E402
from sensor.parquet import read_windows  # noqa: E402

# The feature schema's groups (docs/features.md); every feature but 'present' in one.
GROUPS: dict[str, tuple[str, ...]] = {
    "volume": ("log_pkts_fwd", "log_pkts_rev", "log_bytes_fwd", "log_bytes_rev", "rev_pkt_ratio"),
    "lengths": ("len_mean", "len_std", "len_min", "len_max"),
    "ttl": ("ttl_mean", "ttl_range"),
    "tcp window": ("win_mean", "win_min"),
    "tcp flags": tuple(f"frac_{f}" for f in ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns")),
    "timing": ("log_iat_mean_ms", "log_iat_std_ms", "log_iat_min_ms", "new_flow", "log_duration", "log_total_pkts"),
    "first packet": ("first_syn", "midstream", "oneway"),
    "protocol": ("proto_tcp", "proto_udp", "proto_icmp", "proto_other", "sport_low", "dport_low"),
    "header anomalies": ("frac_frag", "frac_bad_frag", "frac_options", "frac_bad_tcp", "dst_group"),
    "initiator": tuple(n for n in SCHEMA.names if n.startswith("src_")),
    "responder": tuple(n for n in SCHEMA.names if n.startswith("dst_") and n != "dst_group"),
    "host history": tuple(n for n in SCHEMA.names if n.startswith("hist_")),
    "aggregates": tuple(n for n in SCHEMA.names if n.startswith("agg_")),
    "link deviations": tuple(n for n in SCHEMA.names if n.startswith("ctx_z_")),
    "link composition": LINK_COMPOSITION,
}
RATES = (1, 5, 20)  # false flows per 10,000 for the threshold-free view


Windows = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # trace: windows (N, 3, F), labels, flow ids


def _windows(features: Path, traces: Sequence[str]) -> Windows:
    """The windows of ``traces``."""
    out = {}
    for t in traces:
        parts = sorted((features / f"trace={t}").glob("*.parquet"))
        if not parts:
            raise FlowlstmError(f"{features}: no windows of trace {t!r}")
        got = [read_windows(str(p)) for p in parts]
        out[t] = (
            np.concatenate([w.x for w in got]),
            np.concatenate([w.table.column("label").to_numpy() for w in got]),
            np.concatenate([w.table.column("flow_id").to_numpy() for w in got]),
        )
    return out


def neutralized(bundle: ModelBundle, x: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``x`` with the features ``names`` at the bundle's training mean in every present second."""
    y = x.copy()
    present = y[:, :, 0] > 0
    for n in names:
        i = SCHEMA.names.index(n)
        y[:, :, i] = np.where(present, bundle.normalization.mean[i], y[:, :, i])
    return y


def report(bundle: ModelBundle, benign: Windows, attacks: Windows) -> list[str]:
    """The two tables, as Markdown lines."""
    thr = float(bundle.thresholds[0])
    xb = np.concatenate([x[y == 0] for x, y, _ in benign.values()])
    xa = np.concatenate([x[y > 0] for x, y, _ in attacks.values()])
    hot_b = xb[bundle.score_all(xb)[:, 0] >= thr]
    hot_a = xa[bundle.score_all(xa)[:, 0] >= thr]
    lines = [
        f"Supervised threshold {thr:.6f}: {len(hot_b)} of {len(xb)} benign windows and {len(hot_a)} of "
        f"{len(xa)} attack windows at or above it.",
        "",
        "| group | features | benign windows taken below | attack windows kept above |",
        "|---|---|---|---|",
    ]
    for group, names in GROUPS.items():
        below = int(np.sum(bundle.score_all(neutralized(bundle, hot_b, names))[:, 0] < thr)) if len(hot_b) else 0
        kept = int(np.sum(bundle.score_all(neutralized(bundle, hot_a, names))[:, 0] >= thr)) if len(hot_a) else 0
        lines.append(f"| {group} | {len(names)} | {below}/{len(hot_b)} | {kept}/{len(hot_a)} |")
    # threshold-free: benign flows by their top window, per trace (flow ids are per trace)
    tops = []
    for x, y, flow in benign.values():
        s = bundle.score_all(x[y == 0])[:, 0].astype(np.float64)
        ids, inv = np.unique(flow[y == 0], return_inverse=True)
        top = np.full(len(ids), -1.0)
        np.maximum.at(top, inv.reshape(-1), s)
        tops.append(top)
    ranked = np.sort(np.concatenate(tops))[::-1]
    families: dict[str, list[np.ndarray]] = {}
    for t, (x, y, _) in attacks.items():
        if (y > 0).any():
            families.setdefault(t.split("--")[0], []).append(bundle.score_all(x[y > 0])[:, 0])
    lines += [
        "",
        "| family | " + " | ".join(f"detected at {r} in 10k of {len(ranked)} benign flows" for r in RATES) + " |",
    ]
    lines.append("|---" * (len(RATES) + 1) + "|")
    for fam, parts in sorted(families.items()):
        s = np.concatenate(parts)
        cells = []
        for r in RATES:
            k = min(int(len(ranked) * r / 1e4), len(ranked) - 1)
            cells.append(f"{np.mean(s > ranked[k]):.2f}")
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", required=True, help="model bundle directory")
    p.add_argument("--features", required=True, type=Path, help="windows from 'flowlstm-train features'")
    p.add_argument("--benign", required=True, help="comma-separated traces whose label-0 windows are benign")
    p.add_argument("--attacks", required=True, help="comma-separated traces whose labelled windows are attacks")
    args = p.parse_args(argv)
    try:
        bundle = ModelBundle(args.bundle)
        lines = report(
            bundle,
            _windows(args.features, [t for t in args.benign.split(",") if t]),
            _windows(args.features, [t for t in args.attacks.split(",") if t]),
        )
    except FlowlstmError as exc:
        print(f"feature-groups: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
