"""The ``train`` command: splits, the three models, leave-family-out, report, bundle."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensor import __version__
from sensor.errors import UsageError

from .dataset import Windows, family_split, fit_normalization, load_windows, time_split, write_summary
from .evaluate import Scores, evaluate, plot, threshold_for_fpr, write_report
from .export import export_bundle
from .jobs import TrainJob
from .spark import spark_context
from .train import TrainConfig, predict, svm_scores, train_lstm, train_svm

if TYPE_CHECKING:
    import keras
    from pyspark import SparkContext

    from sensor.model import Normalization


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _threshold(y: np.ndarray, score: np.ndarray, target_fpr: float) -> float:
    return float(np.clip(threshold_for_fpr(y, score, target_fpr), 1e-6, 1 - 1e-6))


def _fit_models(
    sc: SparkContext,
    w: Windows,
    train_m: np.ndarray,
    test_m: np.ndarray,
    cfg: TrainConfig,
    target_fpr: float,
    with_baselines: bool,
    label: str,
) -> tuple[Normalization, dict[str, keras.Model], list[Scores], dict[str, float], dict[str, dict[str, Any]]]:
    """Train on train_m, pick thresholds on the training data, score test_m."""
    norm = fit_normalization(w.x[train_m])
    xtr, ytr = norm.apply(w.x[train_m]), w.y[train_m].astype(np.float32)
    xte, yte = norm.apply(w.x[test_m]), w.y[test_m]
    if ytr.sum() == 0 or ytr.sum() == len(ytr):
        raise UsageError(f"{label}: the training split has only one class; inject attacks or add labels")
    rng = np.random.default_rng(cfg.seed)
    val = rng.choice(len(xtr), size=min(len(xtr), 20000), replace=False)
    models: dict[str, keras.Model] = {}
    scores: list[Scores] = []
    thresholds: dict[str, float] = {}

    lstm = train_lstm(sc, xtr, ytr, cfg, xtr[val], ytr[val], _say, f"{label} lstm")
    models["lstm"] = lstm
    thresholds["lstm"] = _threshold(ytr, predict(lstm, xtr), target_fpr)
    scores.append(Scores("lstm", yte, predict(lstm, xte), w.taxonomy[test_m]))
    if with_baselines:
        nc = train_lstm(sc, xtr[:, 1:2], ytr, cfg, xtr[val][:, 1:2], ytr[val], _say, f"{label} no-context lstm")
        thresholds["lstm (no context)"] = _threshold(ytr, predict(nc, xtr[:, 1:2]), target_fpr)
        scores.append(Scores("lstm (no context)", yte, predict(nc, xte[:, 1:2]), w.taxonomy[test_m]))
        _say(f"[{label} svm] training MLlib LinearSVC")
        svm = train_svm(sc, xtr, ytr, cfg)
        thresholds["linear svm"] = _threshold(ytr, svm_scores(svm, xtr), target_fpr)
        scores.append(Scores("linear svm", yte, svm_scores(svm, xte), w.taxonomy[test_m]))
    results = {s.name: evaluate(s, thresholds[s.name]) for s in scores}
    return norm, models, scores, thresholds, results


def train_all(args: TrainJob) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w = load_windows(args.features)
    train_m, test_m = time_split(w, args.test_fraction)
    if w.y[test_m].sum() == 0:
        raise UsageError(
            "the held-out (latest) seconds contain no anomalous window; inject attacks that "
            "span the split or lower --test-fraction"
        )
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, partitions=args.partitions, seed=args.seed)
    report: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "flowlstm": __version__,
        "dataset": write_summary(w),
        "target_fpr": args.target_fpr,
        "config": {
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "partitions": cfg.partitions,
            "seed": cfg.seed,
            "master": args.master,
            "test_fraction": args.test_fraction,
        },
        "splits": {},
    }
    with spark_context(args.master) as sc:
        norm, models, scores, thresholds, results = _fit_models(
            sc, w, train_m, test_m, cfg, args.target_fpr, True, "time split"
        )
        report["splits"]["time split"] = results
        report["plots"] = plot(scores, thresholds, out)
        if args.family_holdout:
            fams = sorted({f for f in w.family[w.y == 1] if f})
            for fam in fams:
                tr, te = family_split(w, fam)
                if w.y[tr].sum() == 0:
                    continue
                *_, res = _fit_models(sc, w, tr, te, cfg, args.target_fpr, False, f"without {fam}")
                report["splits"][f"leave out {fam} (never trained on it)"] = res

    provenance = {
        "features": str(Path(args.features).resolve()),
        "traces": report["dataset"]["traces"],
        "created": report["created"],
        "config": report["config"],
        "split": f"time: last {args.test_fraction:.0%} of each trace's seconds held out",
    }
    metrics = {
        k: {m: v[m] for m in ("detection_rate", "fpr", "precision", "f1", "roc_auc", "pr_auc")}
        for k, v in report["splits"]["time split"].items()
    }
    report["quantization"] = export_bundle(
        models["lstm"],
        out / "bundle",
        norm,
        thresholds["lstm"],
        name=args.name,
        provenance=provenance,
        metrics=metrics,
        check_x=w.x[test_m],
    )
    write_report(report, out)
    return report
