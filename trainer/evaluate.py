"""Evaluation: metrics, threshold choice, per-class recall, plots, Markdown + JSON report."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from .labels import anomaly_class


@dataclass(frozen=True)
class Scores:
    """One model's scores on one split."""

    name: str
    y: np.ndarray
    score: np.ndarray
    taxonomy: np.ndarray


class GroupRecall(TypedDict):
    """Recall over the anomalous windows of one group (taxonomy or class)."""

    recall: float
    windows: int


def threshold_for_flow_budget(
    score: np.ndarray, benign: np.ndarray, flow_keys: np.ndarray, per_10k_flows: float
) -> float:
    """The lowest threshold at which at most ``per_10k_flows`` in 10,000 benign flows would
    have a window at or above it: a false-alert budget counted in flows, as alerts are.

    ``flow_keys`` names each window's flow (unique across traces); only ``benign`` windows
    count.  A flow alerts once however many of its windows are above the threshold, so the
    budget is on each benign flow's highest score.
    """
    keys, inv = np.unique(flow_keys[benign], return_inverse=True)
    if len(keys) == 0:
        return 0.5
    top = np.full(len(keys), -np.inf)
    np.maximum.at(top, inv.reshape(-1), score[benign].astype(np.float64))
    allowed = int(np.floor(len(keys) * per_10k_flows / 1e4))
    ranked = np.sort(top)[::-1]
    if allowed >= len(ranked):
        return float(ranked[-1])
    # just above the (allowed+1)-th highest flow score: that flow and all below stay quiet
    return float(np.nextafter(np.float32(ranked[allowed]), np.float32(np.inf)))


def metrics_at(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    pred = score >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
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


def curve_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return {"roc_auc": float("nan"), "pr_auc": float("nan")}
    return {"roc_auc": float(roc_auc_score(y, score)), "pr_auc": float(average_precision_score(y, score))}


def recall_by(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict[str, GroupRecall]:
    out: dict[str, GroupRecall] = {}
    for g in sorted({str(v) for v in groups[y == 1]}):
        m = (y == 1) & (groups == g)
        out[g] = {"recall": float(np.mean(pred[m])), "windows": int(m.sum())}
    return out


def evaluate(s: Scores, threshold: float) -> dict[str, Any]:
    """Every number the report shows for one model at one threshold."""
    res: dict[str, Any] = metrics_at(s.y, s.score, threshold) | curve_metrics(s.y, s.score)
    pred = s.score >= threshold
    res["recall_by_taxonomy"] = recall_by(s.y, pred, s.taxonomy)
    classes = np.array([anomaly_class(t) if t else "" for t in s.taxonomy], dtype=object)
    res["recall_by_class"] = recall_by(s.y, pred, classes)
    return res


def plot(scores: list[Scores], thresholds: dict[str, float], out_dir: Path) -> list[str]:
    """ROC, PR and score-histogram PNGs; returns the file names."""
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
            lambda s: roc_curve(s.y, s.score)[:2],
            "false-positive rate (symlog)",
            "detection rate",
            "ROC, held-out split",
            "lower right",
            xscale="symlog",
        ),
        curves(
            "pr.png",
            lambda s: precision_recall_curve(s.y, s.score)[1::-1],
            "recall",
            "precision",
            "Precision-recall, held-out split",
            "lower left",
        ),
    ]
    fig, axes = plt.subplots(len(scores), 1, figsize=(6, 2.6 * len(scores)), squeeze=False)
    for ax, s in zip(axes[:, 0], scores, strict=True):
        bins = np.linspace(0, 1, 51)
        ax.hist(s.score[s.y == 0], bins=bins, alpha=0.6, label="benign", log=True)
        ax.hist(s.score[s.y == 1], bins=bins, alpha=0.6, label="anomaly", log=True)
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
        ),
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
