"""Site calibration: each head's threshold raised to a false-alert budget on a site's own traffic.

A bundle's thresholds meet their budget on the benign flows it was trained on.  On a network
no training side had, the benign tail is heavier: on the validation network the shipped
recipe raised 81 to 86 false alerts per 10,000 benign flows at a budget of 1 (four seeds, on
two machines), nearly all of them single flows whose windows score just above the threshold
(docs/model/folds/README.md).  The
network whose benign tail matters to a sensor is its own link, and its operator has that
traffic.  Calibration scores captures of the link that the operator vouches for as benign
with every head of the bundle, takes each flow's highest score per head (a flow alerts once),
and sets each head's threshold so that at most its share of the budget in 10,000 of those
flows would reach it: the rule the trainer sets the bundle's thresholds by, on the training
flows (``threshold_for_flow_budget``, one implementation).

Thresholds are only raised.  A threshold below the bundle's was never checked against the
benign flows of the networks the bundle was trained on, and a quiet calibration capture says
little about the flows it lacks; a calibrated sensor alerts on a subset of what the bundle
alerts on.  An attack inside the calibration traffic is taught as normal: its flows set the
thresholds above themselves.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError
from .model import METADATA_FILE, ModelBundle, install_bundle

THRESHOLD_RANGE = (1e-6, 1 - 1e-6)  # a bundle's thresholds lie strictly between 0 and 1
_MERGE_AT = 1 << 20  # buffered (flow, scores) rows before they are folded into one row per flow


def threshold_for_flow_budget(flows: int, ranked: Sequence[float], per_10k_flows: float) -> float:
    """The lowest threshold at which at most ``per_10k_flows`` in 10,000 benign flows would
    have a window at or above it: a false-alert budget counted in flows, as alerts are.

    A flow alerts once however many of its windows are above the threshold, so the budget is
    on each benign flow's highest score: ``flows`` is the number of benign flows and ``ranked``
    their highest scores in descending order, at least ``allowed + 1`` of them where there are.
    """
    if flows == 0:
        return 0.5
    allowed = int(np.floor(flows * per_10k_flows / 1e4))
    if allowed >= flows:
        return float(ranked[-1])
    # just above the (allowed+1)-th highest flow score: that flow and all below stay quiet
    return float(np.nextafter(np.float32(ranked[allowed]), np.float32(np.inf)))


def head_threshold(flows: int, ranked: Sequence[float], per_10k_flows: float) -> float:
    """``threshold_for_flow_budget`` kept inside the range a bundle's metadata allows."""
    return float(np.clip(threshold_for_flow_budget(flows, ranked, per_10k_flows), *THRESHOLD_RANGE))


class FlowTops:
    """Each flow's highest score per head over the windows added so far.

    Flows are named by the feature path's ``flow_id`` (unique within one run).  Rows are
    buffered and folded into one per flow in bulk, so the cost is a few array operations per
    second of traffic, not a dictionary update per window.
    """

    def __init__(self, heads: int):
        self.heads = heads
        self.windows = 0
        self._ids: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._buffered = 0

    def add(self, flow_ids: np.ndarray, scores: np.ndarray) -> None:
        """Take the (N,) flow ids and (N, heads) scores of N windows."""
        self.windows += len(flow_ids)
        self._ids.append(np.asarray(flow_ids, np.uint64))
        self._scores.append(np.asarray(scores, np.float32).reshape(len(flow_ids), self.heads))
        self._buffered += len(flow_ids)
        if self._buffered >= _MERGE_AT:
            self._fold()

    def _fold(self) -> None:
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.uint64)
        scores = np.concatenate(self._scores) if self._scores else np.zeros((0, self.heads), np.float32)
        keys, inv = np.unique(ids, return_inverse=True)
        top = np.full((len(keys), self.heads), -np.inf, np.float32)
        np.maximum.at(top, inv.reshape(-1), scores)
        self._ids, self._scores = [keys], [top]
        self._buffered = len(keys)

    def tops(self) -> np.ndarray:
        """(flows, heads) float32: each flow's highest score per head."""
        self._fold()
        return self._scores[0]


@dataclass(frozen=True)
class HeadCalibration:
    """One head's thresholds: the bundle's, the one the site's flows ask for, the one kept."""

    name: str
    bundle: float
    site: float
    threshold: float  # max(bundle, site): thresholds are only raised
    above_bundle: int  # calibration flows at or above the bundle's threshold
    above_threshold: int  # ... at or above the kept one


@dataclass(frozen=True)
class Calibration:
    """What calibration found over the site's flows."""

    flows: int
    windows: int
    budget: float  # false alerts per 10,000 flows, shared by the heads
    allowed: int  # calibration flows each head may alert on within its share of the budget
    heads: tuple[HeadCalibration, ...]
    alerting_before: int  # calibration flows some head alerts on, with the bundle's thresholds
    alerting_after: int  # ... with the kept ones

    @property
    def thresholds(self) -> np.ndarray:
        return np.array([h.threshold for h in self.heads], np.float64)

    @property
    def saturated(self) -> tuple[HeadCalibration, ...]:
        """Heads whose budget no threshold meets: more calibration flows than allowed score at
        the top of the range a threshold may take (float32 scores saturate at 1.0)."""
        return tuple(h for h in self.heads if h.above_threshold > self.allowed)


def calibrate(
    tops: np.ndarray, windows: int, names: Sequence[str], bundle_thresholds: np.ndarray, budget: float
) -> Calibration:
    """Each head's threshold for at most ``budget`` false alerts per 10,000 of the flows whose
    highest scores are ``tops`` (flows, heads), split evenly between the heads as the trainer
    splits the bundle's, and never below the bundle's own."""
    n, k = tops.shape
    per_head = budget / max(k, 1)
    heads = []
    for j in range(k):
        ranked = np.sort(tops[:, j])[::-1]
        site = head_threshold(n, ranked.tolist(), per_head)
        kept = max(float(bundle_thresholds[j]), site)
        heads.append(
            HeadCalibration(
                names[j],
                float(bundle_thresholds[j]),
                site,
                kept,
                int(np.count_nonzero(tops[:, j] >= bundle_thresholds[j])),
                int(np.count_nonzero(tops[:, j] >= kept)),
            )
        )
    before = np.asarray(bundle_thresholds, np.float64)
    after = np.array([h.threshold for h in heads], np.float64)
    return Calibration(
        n,
        windows,
        budget,
        int(np.floor(n * per_head / 1e4)),
        tuple(heads),
        int(np.count_nonzero((tops >= before).any(axis=1))),
        int(np.count_nonzero((tops >= after).any(axis=1))),
    )


def calibrated_metadata(
    meta: dict[str, Any], cal: Calibration, captures: Sequence[str], version: str
) -> dict[str, Any]:
    """A copy of a bundle's metadata with the calibrated thresholds and a ``site_calibration``
    record of where they came from; the model files it names are unchanged."""
    out = copy.deepcopy(meta)
    out["threshold"] = cal.heads[0].threshold
    for h, head in zip(out.get("heads", []), cal.heads[1:], strict=True):
        h["threshold"] = head.threshold
    name = str(meta.get("name") or "bundle")
    out["name"] = name if name.endswith("+site") else f"{name[:195]}+site"
    out["site_calibration"] = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sensor_version": version,
        "captures": list(captures),
        "flows": cal.flows,
        "windows": cal.windows,
        "false_alert_budget": cal.budget,
        "heads": [
            {
                "name": h.name,
                "bundle_threshold": h.bundle,
                "site_threshold": h.site,
                "threshold": h.threshold,
                "flows_at_bundle_threshold": h.above_bundle,
                "flows_at_threshold": h.above_threshold,
            }
            for h in cal.heads
        ],
    }
    return out


def check_out(bundle: ModelBundle, out_dir: Path) -> None:
    """Refuse an ``out_dir`` that a calibrated copy must not replace: the bundle itself, or a
    directory that holds something other than a bundle."""
    if out_dir.resolve() == bundle.path.resolve():
        raise OutputError(f"{out_dir}: is the bundle being calibrated; write the calibrated one elsewhere")
    if out_dir.is_file() or (out_dir.is_dir() and not (out_dir / METADATA_FILE).is_file() and any(out_dir.iterdir())):
        raise OutputError(f"{out_dir}: exists and is not a model bundle; not replacing it")


def write_bundle(bundle: ModelBundle, meta: dict[str, Any], out_dir: Path) -> None:
    """Write ``bundle``'s model files with metadata ``meta`` to ``out_dir``, all or nothing: the
    copy is written beside it, loaded back with every check a sensor makes, and only then put in
    place of what ``out_dir`` held."""
    check_out(bundle, out_dir)
    files = [h.spec.file for h in bundle.heads] + [h.gate.spec.file for h in bundle.heads if h.gate is not None]
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create: {exc.strerror}") from None
    try:
        for f in files:
            shutil.copyfile(bundle.path / f, tmp / f)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        ModelBundle(tmp)
        install_bundle(tmp, out_dir)
    except OSError as exc:
        raise OutputError(f"{out_dir}: write failed: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
