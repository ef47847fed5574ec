#!/usr/bin/env python3
"""Scoring blocks of windows with a Keras model in a Spark task: Keras ``predict`` per block
(how the trainer scored before) against ``trainer.frame.Scorer`` (padded ``predict_on_batch``).

Blocks are one trace's windows cut into pieces of seeded random lengths (``--min``..``--max``
windows: a block is one trace's windows in one partition, and their lengths vary that much),
scored by the paper's LSTM and the normal head's encoder-decoder (untrained: the cost is the
same).  Prints each way's windows a second and the ratio, and the largest difference between
the two ways' scores.

    .venv/trainer/bin/python bench/scoring.py --windows FEATURES/trace=mawi/part-0.parquet
        [--blocks 200] [--min 20] [--max 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sensor.parquet import read_windows  # noqa: E402
from trainer.frame import Scorer  # noqa: E402
from trainer.model import build_lstm, build_normal  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", required=True, metavar="PARQUET", help="a part file of 'flowlstm-train features'")
    p.add_argument("--blocks", type=int, default=200)
    p.add_argument("--min", type=int, default=20)
    p.add_argument("--max", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    x = read_windows(args.windows).x
    rng = np.random.default_rng(args.seed)
    sizes = rng.integers(args.min, args.max + 1, args.blocks)
    starts = rng.integers(0, max(1, len(x) - args.max), args.blocks)
    blocks = [x[s : s + n] for s, n in zip(starts, sizes, strict=True)]
    total = sum(len(b) for b in blocks)
    print(f"{len(blocks)} blocks of {args.min}-{args.max} windows ({total:,} windows, {x.shape[2]} features)")
    for name, model in (("lstm", build_lstm(x.shape[2], 3)), ("normal", build_normal(x.shape[2], 3))):
        scorer = Scorer.keras(name, model)
        scorer.output(blocks[0])  # built and traced once, as a worker does
        model.predict(blocks[0], verbose=0)
        t = time.perf_counter()
        before = [model.predict(b, batch_size=4096, verbose=0) for b in blocks]
        t_before = time.perf_counter() - t
        t = time.perf_counter()
        now = [scorer.output(b) for b in blocks]
        t_now = time.perf_counter() - t
        diff = max(float(np.abs(a - b).max()) for a, b in zip(before, now, strict=True))
        print(
            f"{name:7} predict per block {total / t_before:9,.0f} windows/s   Scorer {total / t_now:9,.0f} windows/s"
            f"   ratio {t_before / t_now:5.1f}x   largest score difference {diff:.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
