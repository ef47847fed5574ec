"""The ``train`` command: splits, the models, leave-family-out, report, the bundle and the baselines' bundles."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensor import __version__
from sensor.errors import UsageError

from .corpus import load as load_corpus
from .dataset import (
    CorpusSplit,
    Windows,
    corpus_split,
    family_balanced_rows,
    family_split,
    fit_normalization,
    load_windows,
    time_split,
    write_summary,
)
from .evaluate import Scores, evaluate, plot, threshold_for_flow_budget, write_report
from .export import Head, export_bundle
from .jobs import TrainJob
from .manifest import run_manifest
from .model import centre_only_twin, inference_twin, linear_scorer, logits, normal_scorer, temperature_for
from .spark import spark_context
from .train import TrainConfig, predict, squash, svm_margins, train_lstm, train_normal, train_svm

if TYPE_CHECKING:
    from pyspark import SparkContext

    from sensor.model import Normalization


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _threshold(score: np.ndarray, benign: np.ndarray, keys: np.ndarray, budget: float) -> float:
    return float(np.clip(threshold_for_flow_budget(score, benign, keys, budget), 1e-6, 1 - 1e-6))


NORMAL_TRAIN_WINDOWS = 200_000  # benign windows the normal head trains on (a seeded sample)


@dataclass
class Fitted:
    """What one training split produced."""

    norm: Normalization
    models: dict[str, Any]  # "lstm" (Keras), "normal" (Keras encoder-decoder), ...
    normal_mse: np.ndarray
    normal_scale: float
    temperatures: dict[str, float]  # per supervised model (see trainer.model.temperature_for)
    scores: list[Scores]
    thresholds: dict[str, float]
    results: dict[str, dict[str, Any]]


def _fit_models(
    sc: SparkContext,
    w: Windows,
    train_m: np.ndarray,
    test_m: np.ndarray,
    cfg: TrainConfig,
    budget: float,
    with_baselines: bool,
    label: str,
) -> Fitted:
    """Train on train_m, pick thresholds for the false-alert budget on the training data, score test_m.

    The combined sensor (supervised and normal heads, either firing) gets half the budget
    per head; each baseline gets all of it.
    """
    norm = fit_normalization(w.x[train_m])
    xtr, ytr = norm.apply(w.x[train_m]), w.y[train_m].astype(np.float32)
    xte, yte = norm.apply(w.x[test_m]), w.y[test_m]
    keys = w.flow
    ktr, benign = keys[train_m], ytr == 0
    if ytr.sum() == 0 or ytr.sum() == len(ytr):
        raise UsageError(f"{label}: the training split has only one class; inject attacks or add labels")
    rng = np.random.default_rng(cfg.seed)
    val = rng.choice(len(xtr), size=min(len(xtr), 20000), replace=False)
    models: dict[str, Any] = {}
    scores: list[Scores] = []
    thresholds: dict[str, float] = {}
    tax = w.taxonomy[test_m]
    # The LSTMs see small families drawn up to the mean family; thresholds, the normal head and
    # the linear SVM use the training windows as they are (the SVM trained on the balanced rows
    # put benign and attack margins on top of each other: detection 0.006 against 0.90 at the
    # same false-alert budget, in the default corpus's own time split).
    rows = family_balanced_rows(ytr, w.family[train_m], cfg.seed) if cfg.family_balance else np.arange(len(ytr))
    xsup, ysup = xtr[rows], ytr[rows]

    lstm = train_lstm(sc, xsup, ysup, cfg, xtr[val], ytr[val], _say, f"{label} lstm")
    models["lstm"] = lstm
    z = logits(lstm, xtr)
    temperature = temperature_for(z[benign])
    thresholds["lstm"] = _threshold(squash(z, temperature), benign, ktr, budget / 2)
    temps = {"lstm": temperature}
    lstm_te = squash(logits(lstm, xte), temperature)
    scores.append(Scores("lstm", yte, lstm_te, tax))

    pool = np.flatnonzero(benign)
    sample = np.sort(rng.choice(pool, size=min(len(pool), NORMAL_TRAIN_WINDOWS), replace=False))
    ae, mse, scale = train_normal(sc, xtr[sample], cfg, _say, f"{label} normal")
    scorer = normal_scorer(ae, mse, scale, unroll=False)
    models["normal"] = ae
    thresholds["normal"] = _threshold(predict(scorer, xtr), benign, ktr, budget / 2)
    normal_te = predict(scorer, xte)
    scores.append(Scores("normal", yte, normal_te, tax))
    # Either head firing, as one score: the larger of each head's score over its threshold, halved.
    both = np.minimum(np.maximum(lstm_te / thresholds["lstm"], normal_te / thresholds["normal"]) / 2, 1.0)
    scores.append(Scores("combined", yte, both.astype(np.float32), tax))
    thresholds["combined"] = 0.5

    if with_baselines:
        nc = train_lstm(sc, xsup[:, 1:2], ysup, cfg, xtr[val][:, 1:2], ytr[val], _say, f"{label} no-context lstm")
        models["lstm (no context)"] = nc
        z = logits(nc, xtr[:, 1:2])
        t_nc = temps["lstm (no context)"] = temperature_for(z[benign])
        thresholds["lstm (no context)"] = _threshold(squash(z, t_nc), benign, ktr, budget)
        scores.append(Scores("lstm (no context)", yte, squash(logits(nc, xte[:, 1:2]), t_nc), tax))
        _say(f"[{label} svm] training MLlib LinearSVC")
        svm = train_svm(sc, xtr, ytr, cfg)
        # The weights as numpy: the MLlib model reads them through the Spark context, gone at export.
        models["linear svm"] = (svm.coefficients.toArray(), float(svm.intercept))
        m = svm_margins(svm, xtr)
        t_svm = temps["linear svm"] = temperature_for(m[benign])
        thresholds["linear svm"] = _threshold(squash(m, t_svm), benign, ktr, budget)
        scores.append(Scores("linear svm", yte, squash(svm_margins(svm, xte), t_svm), tax))
    results = {s.name: evaluate(s, thresholds[s.name]) for s in scores}
    return Fitted(norm, models, mse, scale, temps, scores, thresholds, results)


def _heads(fit: Fitted, n_features: int) -> dict[str, Head]:
    """Every trained model as an exportable head, with its threshold."""
    lstm_info = {"type": "lstm", "units": 64, "activation": "relu"}
    t = fit.temperatures
    heads = {
        "supervised": Head(
            "supervised",
            inference_twin(fit.models["lstm"], t["lstm"]),
            fit.thresholds["lstm"],
            {**lstm_info, "temperature": t["lstm"]},
        ),
        "normal": Head(
            "normal",
            normal_scorer(fit.models["normal"], fit.normal_mse, fit.normal_scale, unroll=True),
            fit.thresholds["normal"],
            {"type": "lstm-autoencoder", "units": 64, "activation": "relu"},
        ),
    }
    if "lstm (no context)" in fit.models:
        t_nc = t["lstm (no context)"]
        heads["no-context"] = Head(
            "no-context",
            centre_only_twin(fit.models["lstm (no context)"], t_nc),
            fit.thresholds["lstm (no context)"],
            {**lstm_info, "temperature": t_nc, "input": "centre second only"},
        )
    if "linear svm" in fit.models:
        coef, intercept = fit.models["linear svm"]
        heads["linear-svm"] = Head(
            "linear-svm",
            linear_scorer(coef, intercept, t["linear svm"], 3, n_features),
            fit.thresholds["linear svm"],
            {"type": "linear-svm", "trainer": "MLlib LinearSVC", "temperature": t["linear svm"]},
        )
    return heads


def train_all(args: TrainJob) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split: CorpusSplit | None = None
    if args.corpus and (args.hold_out_families or args.hold_out_sources):
        split = corpus_split(load_corpus(Path(args.corpus)), args.hold_out_families, args.hold_out_sources)
        w = load_windows(
            args.features,
            set(split.train | split.test),
            args.max_benign_per_trace,
            args.max_anomalous_per_trace,
            args.seed,
        )
        train_m = np.isin(w.trace, list(split.train))
        test_m = np.isin(w.trace, list(split.test))
        split_text = (
            f"corpus: held out families {', '.join(split.held_out_families) or 'none'}; "
            f"sources {', '.join(split.held_out_sources) or 'none'}"
        )
    else:
        w = load_windows(args.features, None, args.max_benign_per_trace, args.max_anomalous_per_trace, args.seed)
        train_m, test_m = time_split(w, args.test_fraction)
        split_text = f"time: last {args.test_fraction:.0%} of each trace's time span held out"
    if w.y[test_m].sum() == 0:
        raise UsageError(
            "the held-out windows contain no anomalous one; inject attacks that span the split, "
            "lower --test-fraction or hold out a family"
        )
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        partitions=args.partitions,
        seed=args.seed,
        family_balance=args.family_balance,
    )
    report: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "flowlstm": __version__,
        "dataset": write_summary(w),
        "false_alert_budget": args.false_alert_budget,
        "config": {
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "partitions": cfg.partitions,
            "seed": cfg.seed,
            "master": args.master,
            "test_fraction": args.test_fraction,
            "family_balance": cfg.family_balance,
        },
        "splits": {},
    }
    settings = {k: v for k, v in report["config"].items() if k != "master"}
    settings |= {
        "split": split_text,
        "false_alert_budget": args.false_alert_budget,
        "max_benign_per_trace": args.max_benign_per_trace,
        "max_anomalous_per_trace": args.max_anomalous_per_trace,
        "family_holdout": args.family_holdout,
    }
    traces = set(report["dataset"]["traces"])
    with spark_context(args.master) as sc:
        report["manifest"] = run_manifest(
            args.features, traces, settings, args.master, sc.defaultParallelism, __version__
        )
        fit = _fit_models(sc, w, train_m, test_m, cfg, args.false_alert_budget, True, "held out")
        report["splits"]["held out"] = fit.results
        report["plots"] = plot(fit.scores, fit.thresholds, out)
        if args.family_holdout:
            fams = sorted({f for f in w.family[w.y == 1] if f})
            for fam in fams:
                tr, te = family_split(w, fam)
                if w.y[tr].sum() == 0:
                    continue
                held = _fit_models(sc, w, tr, te, cfg, args.false_alert_budget, False, f"without {fam}")
                report["splits"][f"leave out {fam} (never trained on it)"] = held.results

    provenance = {
        "features": str(Path(args.features).resolve()),
        "traces": report["dataset"]["traces"],
        "created": report["created"],
        "config": report["config"],
        "split": split_text,
        "manifest": report["manifest"],
    }
    if split is not None:
        provenance["corpus"] = {
            "path": str(Path(args.corpus or "").resolve()),
            "families": list(split.families),
            "sources": list(split.sources),
            "held_out_families": list(split.held_out_families),
            "held_out_sources": list(split.held_out_sources),
        }
    report["split"] = split_text
    metrics = {
        k: {m: v[m] for m in ("detection_rate", "fpr", "precision", "f1", "roc_auc", "pr_auc")}
        for k, v in report["splits"]["held out"].items()
    }
    heads = _heads(fit, w.x.shape[2])
    check = w.x[test_m]
    report["quantization"] = export_bundle(
        [heads["supervised"], heads["normal"]],
        out / "bundle",
        fit.norm,
        name=args.name,
        provenance=provenance,
        metrics=metrics,
        check_x=check,
    )
    # Each head alone (at its threshold in the combined sensor) and the baselines (at the whole
    # budget), as bundles of their own, so the real sensor can run them side by side with the
    # combined one: 'flowlstm-train evaluate --sensor --model combined=RUN/bundle --model ...'.
    for head in heads.values():
        export_bundle(
            [head],
            out / "baselines" / head.name,
            fit.norm,
            name=f"{args.name}-{head.name}",
            provenance=provenance,
            metrics=metrics,
            check_x=check[:2000],
        )
    write_report(report, out)
    return report
