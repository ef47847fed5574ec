"""Evaluation: metrics, threshold choice, per-class recall, plots, Markdown + JSON report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .labels import anomaly_class

if TYPE_CHECKING:
    from pyspark import RDD

    from .frame import Block


@dataclass(frozen=True)
class Scores:
    """A sample of one model's scores on one split, for the plots."""

    name: str
    y: np.ndarray
    score: np.ndarray
    taxonomy: np.ndarray
    weight: np.ndarray  # what each window stands for: 1 / the fraction of its class sampled


def metrics_at(counts: np.ndarray, threshold: float) -> dict[str, float]:
    """Detection rate, FPR, precision and F1 from (tp, fp, fn, tn) at ``threshold``."""
    tp, fp, fn, tn = (int(v) for v in counts)
    dr = tp / (tp + fn) if tp + fn else float("nan")
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * precision * dr / (precision + dr) if tp else 0.0
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "detection_rate": dr,
        "fpr": fpr,
        "precision": precision,
        "f1": f1,
    }


HIST_BINS = np.linspace(0, 1, 51)
PLOT_WINDOWS = 100_000  # per class, drawn for the ROC and PR curves (weighted back to the whole split)


@dataclass
class _Tally:
    """One model's counts over some windows: (tp, fp, fn, tn), recall groups, score histograms."""

    counts: np.ndarray
    groups: dict[tuple[str, str], np.ndarray]  # (taxonomy|class, value) -> [anomalous windows, detected]
    hist: np.ndarray  # (2, bins): benign, anomalous

    def merge(self, o: _Tally) -> _Tally:
        groups = dict(self.groups)
        for k, v in o.groups.items():
            groups[k] = groups[k] + v if k in groups else v
        return _Tally(self.counts + o.counts, groups, self.hist + o.hist)


def _tallies(item: tuple[Block, np.ndarray], thresholds: Sequence[float]) -> list[_Tally]:
    b, s = item
    a = b.y == 1
    kinds = {"taxonomy": b.taxonomy.astype(str)}
    kinds["class"] = np.array([anomaly_class(t) if t else "" for t in kinds["taxonomy"]], dtype=object)
    out = []
    for j, thr in enumerate(thresholds):
        pred = s[:, j] >= thr
        counts = np.array([(pred & a).sum(), (pred & ~a).sum(), (~pred & a).sum(), (~pred & ~a).sum()], np.int64)
        groups = {}
        for kind, g in kinds.items():
            for v in np.unique(g[a]):
                m = a & (g == v)
                groups[(kind, str(v))] = np.array([m.sum(), pred[m].sum()], np.int64)
        hist = np.stack([np.histogram(s[~a, j], HIST_BINS)[0], np.histogram(s[a, j], HIST_BINS)[0]])
        out.append(_Tally(counts, groups, hist))
    return out


AREA_RANGES_PER_CORE = 4  # score ranges the exact ROC/PR integration is cut into, per core


def _distinct_counts(v: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``v`` with (benign, anomalous) counts ``c`` → distinct scores ascending, counts summed."""
    u, inv = np.unique(v, return_inverse=True)
    out = np.zeros((len(u), 2), np.int64)
    np.add.at(out, inv.reshape(-1), c)
    return u, out


def _areas(scored: RDD[tuple[Block, np.ndarray]], j: int) -> dict[str, float]:
    """ROC-AUC (trapezoids) and PR-AUC (average precision) of column ``j``, as scikit-learn's
    ``roc_auc_score`` and ``average_precision_score`` define them, integrated in Spark: windows
    counted per distinct score, the scores cut into ranges at quantiles of a sample, each range
    merged in one task, and each range's cumulative counts started from the totals of the
    ranges above it.  (MLlib's BinaryClassificationMetrics gave a ROC-AUC 7e-5 off
    scikit-learn's on the test trace, and PR by other trapezoids.)  The counts travel as numpy
    arrays, one pair per block and range: a Python pair per distinct score, as sortByKey
    wants, made this the slowest stage of a fold's evaluation (millions of distinct scores).
    """

    def counts(it: tuple[Block, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        b, sc = it
        return _distinct_counts(sc[:, j].astype(np.float64), np.stack([b.y != 1, b.y == 1], axis=1).astype(np.int64))

    per_block = scored.map(counts).persist()
    n_ranges = max(1, scored.context.defaultParallelism * AREA_RANGES_PER_CORE)
    # Range bounds at quantiles of every block's distinct scores (a few per block reach the driver).
    probes = per_block.map(lambda vc: np.quantile(vc[0], np.linspace(0, 1, 9)) if len(vc[0]) else np.zeros(0))
    sample = np.concatenate([*probes.collect(), np.zeros(0)])
    bounds = np.unique(np.quantile(sample, np.linspace(0, 1, n_ranges + 1)[1:-1])) if len(sample) else np.zeros(0)

    def cut(vc: tuple[np.ndarray, np.ndarray]) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
        v, c = vc
        edges = np.searchsorted(v, bounds, side="right")  # range r holds bounds[r-1] < v <= bounds[r]
        for r, (a, z) in enumerate(zip(np.r_[0, edges], np.r_[edges, len(v)], strict=True)):
            if z > a:
                yield r, (v[a:z], c[a:z])

    def merge(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        got = list(parts)
        return _distinct_counts(np.concatenate([p[0] for p in got]), np.concatenate([p[1] for p in got]))

    ranges = (
        per_block.flatMap(cut).groupByKey(numPartitions=n_ranges, partitionFunc=lambda r: r).mapValues(merge).persist()
    )
    totals = dict(ranges.mapValues(lambda vc: vc[1].sum(axis=0)).collect())
    before, acc = {}, np.zeros(2, np.int64)
    for r in sorted(totals, reverse=True):  # highest scores first
        before[r] = acc.copy()
        acc = acc + totals[r]
    neg, pos = acc  # columns: benign, anomalous

    def area(item: tuple[int, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        r, (_, c) = item
        c = c[::-1].astype(np.float64)  # descending scores
        fp = before[r][0] + np.cumsum(c[:, 0])
        tp = before[r][1] + np.cumsum(c[:, 1])
        fp0, tp0 = fp - c[:, 0], tp - c[:, 1]
        roc = float(np.sum((fp - fp0) * (tp + tp0) / 2))
        ap = float(np.sum(c[:, 1] * tp / np.maximum(tp + fp, 1)))
        return np.array([roc, ap])

    roc, ap = ranges.map(area).reduce(np.add) if totals else (0.0, 0.0)
    ranges.unpersist()
    per_block.unpersist()
    return {"roc_auc": float(roc / (pos * neg)), "pr_auc": float(ap / pos)}


def evaluate_scored(
    scored: RDD[tuple[Block, np.ndarray]], names: Sequence[str], thresholds: Sequence[float], seed: int
) -> tuple[dict[str, dict[str, Any]], list[Scores]]:
    """Every number the report shows, per model (column of ``scored``, at its threshold), and a
    sample of each model's scores for the plots — computed in the executors: the driver gets
    counts, areas and up to ``PLOT_WINDOWS`` windows' scores of each class."""
    from pyspark import StorageLevel

    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    tallies = scored.map(lambda it: _tallies(it, thresholds)).reduce(
        lambda x, z: [p.merge(q) for p, q in zip(x, z, strict=True)]
    )
    results: dict[str, dict[str, Any]] = {}
    for j, (name, t) in enumerate(zip(names, tallies, strict=True)):
        tp, fp, fn, tn = t.counts
        two_classes = tp + fn > 0 and fp + tn > 0
        res: dict[str, Any] = metrics_at(t.counts, thresholds[j])
        res |= _areas(scored, j) if two_classes else {"roc_auc": float("nan"), "pr_auc": float("nan")}
        for kind in ("taxonomy", "class"):
            res[f"recall_by_{kind}"] = {
                v: {"recall": float(n[1] / n[0]), "windows": int(n[0])}
                for (k, v), n in sorted(t.groups.items())
                if k == kind
            }
        res["histogram"] = t.hist.tolist()
        results[name] = res
    anomalous = int(tallies[0].counts[0] + tallies[0].counts[2]) if tallies else 0
    benign = int(tallies[0].counts[1] + tallies[0].counts[3]) if tallies else 0
    f = (min(1.0, PLOT_WINDOWS / anomalous) if anomalous else 1.0, min(1.0, PLOT_WINDOWS / benign) if benign else 1.0)

    def pick(it: tuple[Block, np.ndarray]) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        b, sc = it
        keep = b.rng(seed, "plot").random(len(b)) < np.where(b.y == 1, f[0], f[1])
        return [(b.key, b.y[keep], b.taxonomy[keep], sc[keep])] if keep.any() else []

    got = sorted(scored.flatMap(pick).collect(), key=lambda r: r[0])
    scored.unpersist()
    y = np.concatenate([g[1] for g in got]) if got else np.zeros(0, np.int8)
    tax = np.concatenate([g[2] for g in got]) if got else np.zeros(0, object)
    sc = np.concatenate([g[3] for g in got]) if got else np.zeros((0, len(names)), np.float32)
    weight = np.where(y == 1, 1 / f[0], 1 / f[1])
    samples = [Scores(name, y, sc[:, j], tax, weight) for j, name in enumerate(names)]
    return results, samples


def plot(
    scores: list[Scores], results: dict[str, dict[str, Any]], thresholds: dict[str, float], out_dir: Path
) -> list[str]:
    """ROC and PR curves (from the weighted samples ``scores``) and score histograms (from each
    model's whole-split ``results``) as PNGs; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    def curves(
        name: str,
        points: Callable[[Scores], Sequence[np.ndarray]],
        xlabel: str,
        ylabel: str,
        title: str,
        legend: str,
        xscale: str | None = None,
    ) -> str:
        fig, ax = plt.subplots(figsize=(6, 5))
        for s in scores:
            if len(np.unique(s.y)) > 1:
                ax.plot(*points(s), label=s.name)
        if xscale:
            ax.set_xscale("symlog", linthresh=1e-3)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc=legend)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        return name

    names = [
        curves(
            "roc.png",
            lambda s: roc_curve(s.y, s.score, sample_weight=s.weight)[:2],
            "false-positive rate (symlog)",
            "detection rate",
            "ROC, held-out split",
            "lower right",
            xscale="symlog",
        ),
        curves(
            "pr.png",
            lambda s: precision_recall_curve(s.y, s.score, sample_weight=s.weight)[1::-1],
            "recall",
            "precision",
            "Precision-recall, held-out split",
            "lower left",
        ),
    ]
    fig, axes = plt.subplots(len(scores), 1, figsize=(6, 2.6 * len(scores)), squeeze=False)
    for ax, s in zip(axes[:, 0], scores, strict=True):
        benign, anomalous = results[s.name]["histogram"]
        ax.stairs(benign, HIST_BINS, fill=True, alpha=0.6, label="benign")
        ax.stairs(anomalous, HIST_BINS, fill=True, alpha=0.6, label="anomaly")
        ax.set_yscale("log")
        ax.axvline(thresholds[s.name], color="k", ls="--", lw=1, label="threshold")
        ax.set(title=s.name, xlabel="score", ylabel="windows")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "scores.png", dpi=110)
    plt.close(fig)
    names.append("scores.png")
    return names


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.4f}"
    return str(v)


def _ensemble_text(config: dict[str, Any]) -> str:
    """The report's sentence on the supervised head's ensemble ('' for one LSTM)."""
    k = config.get("ensemble", 1)
    if not isinstance(k, int) or k < 2:
        return ""
    if config.get("ensemble_rule") == "all":
        return f" Supervised head: {k} LSTMs that must all call a window an attack (the least of their logits)."
    return f" Supervised head: the mean of {k} LSTMs' logits."


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """``report.json`` for machines and ``report.md`` (with the plots) for people."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = ["# flowlstm evaluation report", ""]
    d = report.get("dataset", {})
    lines += [
        f"Windows: {d.get('windows')} ({d.get('anomalous')} anomalous). "
        f"Thresholds: at most {report.get('false_alert_budget')} in 10,000 benign training flows alert "
        "(half of it per head for the combined sensor)."
        + (
            " Supervised LSTMs trained family-balanced (small attack families drawn up to the mean family)."
            if report.get("config", {}).get("family_balance")
            else ""
        )
        + (
            f" Trained without {', '.join(ignored)} (they enter every model as 0)."
            if (ignored := report.get("config", {}).get("ignore_features"))
            else ""
        )
        + _ensemble_text(report.get("config", {})),
        "",
    ]
    for split, models in report.get("splits", {}).items():
        lines += [
            f"## {split}",
            "",
            "| model | threshold | detection rate | FPR | precision | F1 | ROC-AUC | PR-AUC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, m in models.items():
            lines.append(
                "| "
                + " | ".join(
                    _fmt(v)
                    for v in (
                        name,
                        m["threshold"],
                        m["detection_rate"],
                        m["fpr"],
                        m["precision"],
                        m["f1"],
                        m["roc_auc"],
                        m["pr_auc"],
                    )
                )
                + " |"
            )
        lines.append("")
        for name, m in models.items():
            if m.get("recall_by_class"):
                parts = ", ".join(f"{k} {v['recall']:.3f} ({v['windows']})" for k, v in m["recall_by_class"].items())
                lines.append(f"- {name}, recall by anomaly class: {parts}")
            if m.get("recall_by_taxonomy"):
                parts = ", ".join(f"{k} {v['recall']:.3f}" for k, v in m["recall_by_taxonomy"].items())
                lines.append(f"- {name}, recall by MAWILab taxonomy: {parts}")
        lines.append("")
    if "quantization" in report:
        q = report["quantization"]
        lines += [
            "## Quantized model",
            "",
            f"Decision agreement float vs TFLite (dynamic-range): {q['agreement']:.5f} "
            f"on {q['windows']} windows; max |score difference| {q['max_abs_diff']:.5f}; "
            f"size {q['bytes']} bytes.",
            "",
        ]
    if "manifest" in report:
        m = report["manifest"]
        versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        lines += [
            "## Manifest",
            "",
            f"Run {m['id'][:16]}… (sha256 of the inputs and settings): {len(m['traces'])} traces, "
            f"captures and labels by sha256 in report.json; seed {m['settings'].get('seed')}; "
            f"Spark {m['spark']['master']} ({m['spark']['default_parallelism']} cores); {versions}.",
            "",
        ]
        if m["unrecorded"]:
            lines += [
                f"Extracted before inputs were recorded (re-run 'features' to record): {', '.join(m['unrecorded'])}.",
                "",
            ]
    for png in report.get("plots", []):
        lines.append(f"![{png}]({png})")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
