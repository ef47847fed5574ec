"""The ``train`` command: splits, the models, leave-family-out, report, the bundle and the baselines' bundles."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensor import __version__
from sensor.calibrate import head_threshold
from sensor.errors import UsageError

from .corpus import load as load_corpus
from .dataset import CorpusSplit, corpus_split
from .evaluate import Scores, evaluate_scored, plot, write_report
from .export import Head, export_bundle
from .frame import (
    Block,
    Scorer,
    Side,
    Summary,
    balance_plan,
    balanced,
    before_cut,
    both,
    budget_ranks,
    by_trace,
    fit_normalization,
    gather,
    held_seconds,
    in_seconds,
    late_seconds,
    normalized,
    read_blocks,
    sample,
    scatter,
    score_blocks,
    side,
    summarize,
    time_cuts,
)
from .jobs import TrainJob
from .manifest import run_manifest
from .model import (
    centre_only_twin,
    ensemble_logits,
    ensemble_twin,
    inference_twin,
    linear_scorer,
    logit_model,
    normal_scorer,
    temperature_for,
)
from .spark import spark_context, stage
from .train import TrainConfig, error_scale, squash, train_lstm, train_normal, train_svm

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext

    from sensor.model import Normalization


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


NORMAL_TRAIN_WINDOWS = 200_000  # benign windows the normal head trains on (a seeded sample, about as many)
SAMPLE_WINDOWS = 20_000  # windows the driver holds: the validation sample, the normal head's probe, the export check


def _fraction(want: int, have: int) -> float:
    return min(1.0, want / have) if have else 1.0


@dataclass
class Fitted:
    """What one training split produced."""

    norm: Normalization
    models: dict[str, Any]  # "lstm" (Keras models: the ensemble's members), "normal" (Keras encoder-decoder), ...
    normal_mse: np.ndarray
    normal_scale: float
    temperatures: dict[str, float]  # per supervised model (see trainer.model.temperature_for)
    scores: list[Scores]  # samples of the held-out scores, for the plots
    thresholds: dict[str, float]
    results: dict[str, dict[str, Any]]
    check_x: np.ndarray  # a sample of the test windows (raw) for the export's quantization check
    member_scales: tuple[float, ...] = ()  # per ensemble member, its logits' divisor (rule "all")
    ensemble_rule: str = "mean"


def _fit_models(
    sc: SparkContext,
    blocks: RDD[Block],
    train_side: Side,
    test_side: Side,
    s_tr: Summary,
    s_te: Summary,
    cfg: TrainConfig,
    budget: float,
    with_baselines: bool,
    label: str,
    calibration: RDD[Block] | None = None,
) -> Fitted:
    """Train on ``blocks``' ``train_side``, pick thresholds for the false-alert budget on the
    benign flows of ``calibration`` (the training data where there is none), score
    ``test_side``: every pass over windows runs in the executors.  ``s_tr`` and ``s_te``
    summarize the two sides (the caller has checked them).

    The combined sensor (supervised and normal heads, either firing) gets half the budget
    per head; each baseline gets all of it.
    """
    from pyspark import StorageLevel

    norm = fit_normalization(side(blocks, train_side), cfg.ignore_features)
    tr = normalized(side(blocks, train_side), norm).persist(StorageLevel.MEMORY_AND_DISK)
    counts = (s_tr.windows - s_tr.anomalous, s_tr.anomalous)
    if min(counts) == 0:
        raise UsageError(f"{label}: the training split has only one class; inject attacks or add labels")
    val = gather(sample(tr, _fraction(SAMPLE_WINDOWS, s_tr.windows), cfg.seed, "validation"))
    models: dict[str, Any] = {}
    # The LSTMs see small families drawn up to the mean family; thresholds, the normal head and
    # the linear SVM use the training windows as they are (the SVM trained on the balanced rows
    # put benign and attack margins on top of each other: detection 0.006 against 0.90 at the
    # same false-alert budget, in the default corpus's own time split).
    sup = tr
    if cfg.family_balance:
        plan = sc.broadcast(balance_plan(s_tr, cfg.seed))
        sup = tr.map(lambda b: balanced(b, plan.value, cfg.seed))
    parts = scatter(sup, cfg.partitions, cfg.seed)
    s_sup = summarize(parts)
    sup_counts = (s_sup.windows - s_sup.anomalous, s_sup.anomalous)
    # An ensemble's members differ only in their seed (initial weights, dropout, each epoch's
    # order): one run of one recipe is a sample, and its held-out ROC-AUC has spread from
    # 0.70 to 0.87 (docs/model/folds/); the mean of several members' logits is the usual cure.
    members = [
        train_lstm(
            parts,
            sup_counts,
            s_tr.n_features,
            replace(cfg, seed=cfg.seed + k),
            val,
            _say,
            f"{label} lstm" + (f" {k + 1}/{cfg.ensemble}" if cfg.ensemble > 1 else ""),
        )
        for k in range(cfg.ensemble)
    ]
    models["lstm"] = members
    calibrated = None
    if calibration is not None:
        calibrated = normalized(calibration, norm).persist(StorageLevel.MEMORY_AND_DISK)
    scales: tuple[float, ...] = ()
    if cfg.ensemble_rule == "all" and len(members) > 1:
        # Members' logits differ in scale from seed to seed; the least of them is only fair in
        # each member's own: its top benign flow's logit, on the flows the thresholds are set on.
        scales = _member_scales(sc, tr if calibrated is None else calibrated, members, label)
    scorers = [Scorer.keras("lstm", ensemble_logits(members, scales, cfg.ensemble_rule))]
    budgets = [budget / 2]
    if len(members) > 1:
        # the first member alone, at the same budget, for the side-by-side comparison
        models["lstm (one member)"] = members[:1]
        scorers.append(Scorer.keras("lstm (one member)", logit_model(members[0])))
        budgets.append(budget / 2)

    pool = side(tr, lambda b: b.y == 0)
    benign = scatter(
        sample(pool, _fraction(NORMAL_TRAIN_WINDOWS, counts[0]), cfg.seed, "normal"), cfg.partitions, cfg.seed
    )
    n_benign = summarize(benign).windows
    probe = gather(sample(benign, _fraction(SAMPLE_WINDOWS, n_benign), cfg.seed, "probe"))
    assert probe is not None  # the split has benign windows (checked above)
    ae, mse, scale = train_normal(sc, benign, n_benign, cfg, probe, _say, f"{label} normal")
    benign.unpersist()
    if calibrated is not None:
        # A network the head never saw has errors far beyond its training ones: scored on the
        # training scale, dozens of its flows are exactly 1.0 in float32 and no threshold can
        # rank them.  The scale of the calibration flows keeps them resolved.
        scale = max(scale, error_scale(sc, ae, mse, side(calibrated, lambda b: b.y == 0)))
    models["normal"] = ae
    scorers.insert(1, Scorer.keras("normal", normal_scorer(ae, mse, scale, unroll=False), logit=False))
    budgets.insert(1, budget / 2)

    if with_baselines:
        nc = train_lstm(parts, sup_counts, s_tr.n_features, cfg, val, _say, f"{label} no-context lstm", centre=True)
        models["lstm (no context)"] = nc
        scorers.append(Scorer.keras("lstm (no context)", logit_model(nc), centre=True))
        _say(f"[{label} svm] training MLlib LinearSVC")
        svm = train_svm(sc, tr, counts, cfg)
        # The weights as numpy: the MLlib model reads them through the Spark context, gone at export.
        models["linear svm"] = (svm.coefficients.toArray(), float(svm.intercept))
        scorers.append(Scorer.linear("linear svm", *models["linear svm"]))
        budgets += [budget, budget]
    parts.unpersist()

    # Scores on the training windows are those of traffic the models learned: on a new network
    # the benign tail is heavier, so a budget met there is exceeded there.  Calibration sources
    # the models never saw put the thresholds where an unseen network's benign flows score.
    ranked_on, ranked_what = (tr, "training") if calibrated is None else (calibrated, "calibration")
    with (
        stage(sc, f"[{label}] thresholds: scoring {ranked_what} windows", 0 if calibration else s_tr.windows),
        score_blocks(sc, ranked_on, scorers) as scored_tr,
    ):
        ranks = budget_ranks(scored_tr, budgets)
    tr.unpersist()
    if calibrated is not None:
        calibrated.unpersist()
    temps: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    for scorer, head_budget, (n, ranked) in zip(scorers, budgets, ranks, strict=True):
        top = np.asarray(ranked, np.float64)
        if scorer.logit:
            # logits and margins: the top benign one sets the temperature (the ranks are flows' tops)
            temps[scorer.name] = temperature_for(top[:1])
            top = squash(top, temps[scorer.name]).astype(np.float64)
        thresholds[scorer.name] = head_threshold(n, top.tolist(), head_budget)

    raw_te = side(blocks, test_side)
    check = gather(sample(raw_te, _fraction(SAMPLE_WINDOWS, s_te.windows), cfg.seed, "check"))
    check_x = check.x if check is not None else np.zeros((0, 3, s_tr.n_features), np.float32)
    thresholds["combined"] = 0.5
    heads = [scorer.name for scorer in scorers]
    names = ["lstm", "normal", "combined"] + [n for n in heads if n not in ("lstm", "normal")]
    col = {n: j for j, n in enumerate(heads)}
    t_lstm, t_normal = thresholds["lstm"], thresholds["normal"]

    def finish(raw: np.ndarray) -> np.ndarray:
        out = {n: squash(raw[:, j], temps[n]) if n in temps else raw[:, j] for n, j in col.items()}
        # Either head firing, as one score: the larger of each head's score over its threshold, halved.
        out["combined"] = np.minimum(np.maximum(out["lstm"] / t_lstm, out["normal"] / t_normal) / 2, 1.0)
        return np.stack([out[n] for n in names], axis=1).astype(np.float32)

    with (
        stage(sc, f"[{label}] scoring held-out windows", s_te.windows),
        score_blocks(sc, normalized(raw_te, norm), scorers) as scored,
    ):
        finished = scored.map(lambda it: (it[0], finish(it[1])))
        results, samples = evaluate_scored(finished, names, [thresholds[n] for n in names], cfg.seed)
    return Fitted(norm, models, mse, scale, temps, samples, thresholds, results, check_x, scales, cfg.ensemble_rule)


def _member_scales(sc: SparkContext, ranked_on: RDD[Block], members: list[Any], label: str) -> tuple[float, ...]:
    """Each ensemble member's temperature (``temperature_for``) on the benign flows of ``ranked_on``."""
    scorers = [Scorer.keras(f"lstm {k + 1}", logit_model(m)) for k, m in enumerate(members)]
    with stage(sc, f"[{label}] scoring each ensemble member", 0), score_blocks(sc, ranked_on, scorers) as scored:
        ranks = budget_ranks(scored, [0.0] * len(members))
    return tuple(temperature_for(np.asarray(top, np.float64)) for _, top in ranks)


def dataset_summary(s: Summary) -> dict[str, Any]:
    """The report's counts: windows, anomalies, per trace and per family."""
    return {
        "windows": s.windows,
        "anomalous": s.anomalous,
        "traces": {t: {"windows": v[0], "anomalous": v[1]} for t, v in sorted(s.traces.items())},
        "families": dict(sorted(s.families.items())),
    }


def _first_member(fit: Fitted, temperature: float) -> Any:
    """The supervised ensemble's gate (``sensor.model.ModelBundle.score_all``): its first member
    alone, scaled as in the ensemble.  Under rule ``all`` the ensemble's logit is the least of
    the members', so this member's score is never below the ensemble's; under ``mean`` no
    member bounds it, and there is no gate."""
    members = fit.models["lstm"]
    if len(members) == 1 or fit.ensemble_rule != "all":
        return None
    return ensemble_twin(members[:1], temperature, fit.member_scales[:1])


def _heads(fit: Fitted, n_features: int) -> dict[str, Head]:
    """Every trained model as an exportable head, with its threshold."""
    lstm_info = {"type": "lstm", "units": 64, "activation": "relu"}
    t = fit.temperatures
    heads = {
        "supervised": Head(
            "supervised",
            ensemble_twin(fit.models["lstm"], t["lstm"], fit.member_scales, fit.ensemble_rule),
            fit.thresholds["lstm"],
            {
                **lstm_info,
                "temperature": t["lstm"],
                "ensemble": len(fit.models["lstm"]),
                "ensemble_rule": fit.ensemble_rule,
                "member_scales": list(fit.member_scales),
            },
            _first_member(fit, t["lstm"]),
        ),
        "normal": Head(
            "normal",
            normal_scorer(fit.models["normal"], fit.normal_mse, fit.normal_scale, unroll=True),
            fit.thresholds["normal"],
            {"type": "lstm-autoencoder", "units": 64, "activation": "relu"},
        ),
    }
    if "lstm (one member)" in fit.models:
        heads["supervised-one-member"] = Head(
            "supervised-one-member",
            inference_twin(fit.models["lstm (one member)"][0], t["lstm (one member)"]),
            fit.thresholds["lstm (one member)"],
            {**lstm_info, "temperature": t["lstm (one member)"]},
        )
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
    traces: set[str] | None = None
    if args.calibration_sources and not args.corpus:
        raise UsageError("calibration sources need --corpus: they are sources of a corpus")
    if args.calibration_sources and args.calibrate_last:
        raise UsageError("thresholds come from calibration sources or from the training traces' last seconds, not both")
    held_out = bool(args.hold_out_families or args.hold_out_sources)
    if args.corpus and (held_out or args.calibration_sources):
        split = corpus_split(
            load_corpus(Path(args.corpus)), args.hold_out_families, args.hold_out_sources, args.calibration_sources
        )
        traces = set(split.train | split.test | split.calibrate)
    if split is not None and held_out:
        split_text = (
            f"corpus: held out families {', '.join(split.held_out_families) or 'none'}; "
            f"sources {', '.join(split.held_out_sources) or 'none'}"
        )
    else:
        split_text = f"time: last {args.test_fraction:.0%} of each trace's time span held out"
    if split is not None and split.calibration_sources:
        split_text += f"; thresholds set on {', '.join(split.calibration_sources)} (never trained on)"
    if args.calibrate_last:
        split_text += f"; thresholds set on each training trace's last {args.calibrate_last:.0%} (never trained on)"
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        partitions=args.partitions,
        seed=args.seed,
        family_balance=args.family_balance,
        ensemble=args.ensemble,
        ensemble_rule=args.ensemble_rule,
        ignore_features=args.ignore_features,
    )
    report: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "flowlstm": __version__,
        "false_alert_budget": args.false_alert_budget,
        "config": {
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "partitions": cfg.partitions,
            "seed": cfg.seed,
            "master": args.master,
            "test_fraction": args.test_fraction,
            "calibrate_last": args.calibrate_last,
            "family_balance": cfg.family_balance,
            "ensemble": cfg.ensemble,
            "ensemble_rule": cfg.ensemble_rule,
            "ignore_features": list(cfg.ignore_features),
        },
        "splits": {},
    }
    settings = {k: v for k, v in report["config"].items() if k != "master"}
    settings |= {
        "split": split_text,
        "false_alert_budget": args.false_alert_budget,
        "max_benign_per_trace": args.max_benign_per_trace,
        "max_anomalous_per_trace": args.max_anomalous_per_trace,
        "min_benign_per_kind": args.min_benign_per_kind,
        "family_holdout": args.family_holdout,
        "baselines": args.baselines,
    }
    with spark_context(args.master) as sc:
        blocks = read = read_blocks(
            sc,
            args.features,
            traces,
            args.max_benign_per_trace,
            args.max_anomalous_per_trace,
            args.seed,
            args.min_benign_per_kind,
        )
        with stage(sc, "[train] reading the windows") as st:
            summary = summarize(blocks)
            st.windows = summary.windows
        _say(f"[train] {summary.windows:,} windows ({summary.anomalous:,} anomalous) in {len(summary.traces)} traces")
        report["dataset"] = dataset_summary(summary)
        calibration = None
        if split is not None and split.calibrate:
            calibration = side(blocks, by_trace(split.calibrate))
            s_cal = summarize(calibration)
            if s_cal.windows == s_cal.anomalous:
                raise UsageError(f"no benign window in {', '.join(split.calibration_sources)} to set thresholds on")
            blocks = side(read, by_trace(split.calibrate, inside=False))
        by_time = not (split is not None and held_out)
        if by_time:
            cuts = time_cuts(summary, args.test_fraction)
            train_side, test_side = before_cut(cuts, test=False), before_cut(cuts, test=True)
        else:
            assert split is not None
            train_side, test_side = by_trace(split.train), by_trace(split.test)
        fit_side: Side | None = None  # with --calibrate-last: the seconds models may train on
        if args.calibrate_last:
            # Seconds no head trained on, of the training networks: where the sensor will score.
            test_part = args.test_fraction if by_time else 0.0
            fit_side, cal_side = late_seconds(summary, args.calibrate_last, test_part)
            calibration = side(blocks, train_side, cal_side)
            s_cal = summarize(calibration)
            if s_cal.windows == s_cal.anomalous:
                raise UsageError("no benign window in the calibration seconds; raise --calibrate-last")
            train_side = both(train_side, fit_side)
        s_tr, s_te = summarize(side(blocks, train_side)), summarize(side(blocks, test_side))
        if s_te.anomalous == 0:
            raise UsageError(
                "the held-out windows contain no anomalous one; inject attacks that span the split, "
                "lower --test-fraction or hold out a family"
            )
        report["manifest"] = run_manifest(
            args.features, set(summary.traces), settings, args.master, sc.defaultParallelism, __version__
        )
        fit = _fit_models(
            sc,
            blocks,
            train_side,
            test_side,
            s_tr,
            s_te,
            cfg,
            args.false_alert_budget,
            args.baselines,
            "held out",
            calibration,
        )
        report["splits"]["held out"] = fit.results
        report["plots"] = plot(fit.scores, fit.results, fit.thresholds, out)
        if args.family_holdout:
            for fam in sorted(f for f in summary.families if f):
                held = held_seconds(blocks, fam)
                tr, te = in_seconds(held, test=False), in_seconds(held, test=True)
                if fit_side is not None:
                    tr = both(tr, fit_side)
                f_tr = summarize(side(blocks, tr))
                if f_tr.anomalous == 0:
                    continue
                f_te = summarize(side(blocks, te))
                kept = _fit_models(
                    sc, blocks, tr, te, f_tr, f_te, cfg, args.false_alert_budget, False, f"without {fam}", calibration
                )
                report["splits"][f"leave out {fam} (never trained on it)"] = kept.results
        read.unpersist()

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
            "calibration_sources": list(split.calibration_sources),
        }
    report["split"] = split_text
    metrics = {
        k: {m: v[m] for m in ("detection_rate", "fpr", "precision", "f1", "roc_auc", "pr_auc")}
        for k, v in report["splits"]["held out"].items()
    }
    heads = _heads(fit, fit.check_x.shape[2])
    check = fit.check_x
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
    if "supervised-one-member" in heads:
        # the combined sensor as it would be without the ensemble, from the same run
        export_bundle(
            [heads["supervised-one-member"], heads["normal"]],
            out / "baselines" / "combined-one-member",
            fit.norm,
            name=f"{args.name}-combined-one-member",
            provenance=provenance,
            metrics=metrics,
            check_x=check[:2000],
        )
    write_report(report, out)
    return report
