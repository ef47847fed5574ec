#!/usr/bin/env python3
"""Passes over the windows in Spark: what a fold pays per pass, with the windows read one
Parquet part to a partition (how the trainer read them before) against
``trainer.frame.PARTS_PER_TASK`` parts to one; and the exact ROC/PR areas computed in Spark
(``trainer.evaluate``) against collecting the scores and calling scikit-learn on the driver.

A fold makes dozens of passes over the same persisted windows (statistics, normalization,
each epoch's deal, every scoring and counting job), so the fixed cost of a task is paid
parts × passes times.  Prints each way's seconds a pass (median of ``--repeat``) and the
ratio, for a trivial pass (count the windows) and a scoring pass (the paper's LSTM,
untrained: the cost is the same).

    .venv/trainer/bin/python bench/passes.py --features FEATURES [--master 'local[*]'] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from trainer import evaluate, frame  # noqa: E402
from trainer.model import build_lstm, logit_model  # noqa: E402
from trainer.spark import spark_context  # noqa: E402


def _median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", required=True, metavar="DIR", help="the output of 'flowlstm-train features'")
    p.add_argument("--master", default="local[*]")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--max-benign-per-trace", type=int, default=1500)
    p.add_argument("--max-anomalous-per-trace", type=int, default=600)
    args = p.parse_args()
    caps = (args.max_benign_per_trace, args.max_anomalous_per_trace, 1)
    with spark_context(args.master, "flowlstm-bench-passes") as sc:
        timing: dict[str, tuple[float, float]] = {}
        scored_rdd = None
        for name, per_task in (("a part a task", 1), (f"{frame.PARTS_PER_TASK} parts a task", frame.PARTS_PER_TASK)):
            frame.PARTS_PER_TASK = per_task
            rdd = frame.read_blocks(sc, args.features, None, *caps)
            s = frame.summarize(rdd)  # reads and persists
            print(f"{name}: {rdd.getNumPartitions()} partitions, {s.windows:,} windows")
            trivial = _median_seconds(lambda rdd=rdd: rdd.map(len).sum(), args.repeat)
            scorers = [frame.Scorer.keras("lstm", logit_model(build_lstm(s.n_features)))]

            def score(rdd=rdd, scorers=scorers) -> None:
                with frame.score_blocks(sc, rdd, scorers) as scored:
                    scored.map(lambda it: len(it[1])).sum()

            timing[name] = (trivial, _median_seconds(score, args.repeat))
            if scored_rdd is not None:
                scored_rdd.unpersist()
            scored_rdd = rdd
        (a, (t0, s0)), (b, (t1, s1)) = timing.items()
        print(f"trivial pass   {a} {t0:7.2f} s   {b} {t1:7.2f} s   ratio {t0 / t1:5.1f}x")
        print(f"scoring pass   {a} {s0:7.2f} s   {b} {s1:7.2f} s   ratio {s0 / s1:5.1f}x")

        # ROC/PR areas of a random linear score over the same windows
        assert scored_rdd is not None
        rdd = scored_rdd
        x0 = rdd.first().x
        coef = np.random.default_rng(1).normal(size=x0[0].size) * 0.01
        with frame.score_blocks(sc, rdd, [frame.Scorer.linear("svm", coef, 0.0)]) as scored:
            scored = scored.persist()
            scored.count()
            got: dict[str, float] = {}

            def spark() -> None:
                got.update(evaluate._areas(scored, 0))

            def driver() -> None:
                from sklearn.metrics import average_precision_score, roc_auc_score

                pairs = scored.map(lambda it: ((it[0].y == 1).astype(np.int8), it[1][:, 0])).collect()
                y = np.concatenate([q[0] for q in pairs])
                sc_ = np.concatenate([q[1] for q in pairs])
                got["sk_roc"], got["sk_ap"] = roc_auc_score(y, sc_), average_precision_score(y, sc_)

            t_spark = _median_seconds(spark, args.repeat)
            t_driver = _median_seconds(driver, args.repeat)
        print(
            f"ROC/PR areas   Spark {t_spark:7.2f} s   collect + scikit-learn {t_driver:7.2f} s   ratio "
            f"{t_driver / t_spark:5.2f}x   |ROC diff| {abs(got['roc_auc'] - got['sk_roc']):.1e}   "
            f"|AP diff| {abs(got['pr_auc'] - got['sk_ap']):.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
