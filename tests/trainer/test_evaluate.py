"""Evaluation in the executors: the counts, recalls and areas equal scikit-learn's and numpy's on
the whole array; the thresholds keep a flow-counted false-alert budget."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from trainer.evaluate import evaluate_scored, plot
from trainer.frame import Scorer, gather, read_blocks, score_blocks
from trainer.spark import spark_context


@pytest.fixture(scope="module")
def sc() -> Iterator[object]:
    with spark_context("local[2]", "flowlstm-test-evaluate") as context:
        yield context


def test_metrics_from_spark_equal_the_whole_arrays(sc, workdir, tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    blocks = read_blocks(sc, workdir / "feat")
    whole = gather(blocks)
    assert whole is not None
    rng = np.random.default_rng(1)
    scorers = [Scorer.linear(f"m{i}", rng.normal(size=whole.x[0].size) * 0.01, 0.0) for i in range(2)]
    with score_blocks(sc, blocks, scorers) as scored:
        results, samples = evaluate_scored(scored, ["a", "b"], [0.0, 0.5], seed=3)
        # the reference: the same scores (BLAS may round a dot product differently in another batch,
        # and this trace has many identical windows whose ties that would break differently)
        ref = np.concatenate([s for _, s in sorted(scored.collect(), key=lambda it: it[0].key)])
    for j, (name, thr) in enumerate(zip("ab", (0.0, 0.5), strict=True)):
        s = ref[:, j]
        r = results[name]
        pred, y = s >= thr, whole.y == 1
        assert (r["tp"], r["fp"], r["fn"], r["tn"]) == tuple(
            int(v) for v in ((pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum(), (~pred & ~y).sum())
        )
        assert r["detection_rate"] == pytest.approx((pred & y).sum() / y.sum())
        assert r["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
        assert r["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
        for tax in np.unique(whole.taxonomy[y]):
            m = y & (whole.taxonomy == tax)
            assert r["recall_by_taxonomy"][tax] == {"recall": pytest.approx(pred[m].mean()), "windows": int(m.sum())}
        hist = np.asarray(r["histogram"])
        assert hist.sum(axis=1).tolist() == [
            int((~y & (s >= 0) & (s <= 1)).sum()),
            int((y & (s >= 0) & (s <= 1)).sum()),
        ]
    # the plot samples stand for the whole split: weights add up to each class's windows
    smp = samples[0]
    for cls in (0, 1):
        assert smp.weight[smp.y == cls].sum() == pytest.approx((whole.y == cls).sum(), rel=0.02)
    pngs = plot(samples, results, {"a": 0.0, "b": 0.5}, tmp_path)
    assert all((tmp_path / p).stat().st_size > 10_000 for p in pngs)
