"""Export: trained Keras model → the sensor's bundle (``model.tflite`` + ``metadata.json``)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from sensor.features import SCHEMA
from sensor.model import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    GATE_SLACK,
    METADATA_FILE,
    MODEL_FILE,
    ModelBundle,
    Normalization,
    file_sha256,
    install_bundle,
)
from sensor.windows import WINDOW_SECONDS

from .model import to_tflite

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Head:
    """One head as exported: a TFLite-convertible scorer (normalized (3, F) window → score in
    [0, 1]), its threshold, and the ``model`` description written into the metadata."""

    name: str
    scorer: keras.Model
    threshold: float
    model: dict[str, Any]
    gate: keras.Model | None = None  # scores every window at least as high as ``scorer`` does

    @property
    def file(self) -> str:
        return f"{self.name}.tflite"

    @property
    def gate_file(self) -> str:
        return f"{self.name}-gate.tflite"


class QuantizationReport(TypedDict):
    """How the quantized bundle's decisions compare with the float model's."""

    windows: int
    agreement: float  # fraction of windows on the same side of the threshold
    max_abs_diff: float
    bytes: int  # model.tflite size
    gate_margin: float  # least (gate − head) over the windows and gated heads (0 without a gate)


def export_bundle(
    heads: Sequence[Head],
    out_dir: str | Path,
    normalization: Normalization,
    *,
    name: str,
    provenance: dict[str, Any],
    metrics: dict[str, dict[str, float]],
    check_x: np.ndarray,
) -> QuantizationReport:
    """Write the bundle atomically, load it back with the sensor's loader and compare
    its decisions with the float models' on ``check_x`` (normalized by the caller's
    normalization inside the bundle).  Returns the quantization report.

    The first head is the bundle's primary model (``model.tflite``, metadata ``head``);
    the others are listed in ``heads``, each in its own ``NAME.tflite``.  The sensor
    alerts when any head scores at or above its threshold.  A head's gate goes into
    ``NAME-gate.tflite`` (its metadata's ``gate``); the export refuses a gate that scores
    a check window lower than its head by more than the sensor's slack.
    """
    if not heads:
        raise ValueError("a bundle needs at least one head")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out_dir.parent))
    try:
        primary, *others = heads
        blob = to_tflite(primary.scorer, tmp / MODEL_FILE, twin=primary.scorer)
        extra: list[dict[str, Any]] = []
        for h in others:
            nblob = to_tflite(h.scorer, tmp / h.file, twin=h.scorer)
            extra.append(
                {
                    "name": h.name,
                    "file": h.file,
                    "sha256": file_sha256(tmp / h.file),
                    "threshold": float(h.threshold),
                    "model": {**h.model, "bytes": len(nblob)},
                    **_gate(h, tmp),
                }
            )
        meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "name": name,
            "schema": {**SCHEMA.to_dict(), "window": WINDOW_SECONDS},
            "normalization": normalization.to_dict(),
            "threshold": float(primary.threshold),
            "model": {**primary.model, "quantization": "dynamic-range"},
            "training": provenance,
            "metrics": metrics,
            "sha256": file_sha256(tmp / MODEL_FILE),
            "head": primary.name,
            "heads": extra,
            **_gate(primary, tmp),
        }
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        bundle = ModelBundle(tmp)
        q = bundle.score_all(check_x)
        xn = normalization.apply(check_x)
        f = np.stack([h.scorer.predict(xn, batch_size=4096, verbose=0).ravel() for h in heads], axis=1)
        thr = bundle.thresholds
        report: QuantizationReport = {
            "windows": int(len(check_x)),
            "agreement": float(np.mean(((q >= thr).any(1)) == ((f >= thr).any(1)))) if len(check_x) else float("nan"),
            "max_abs_diff": float(np.max(np.abs(q - f))) if len(check_x) else 0.0,
            "bytes": len(blob),
            "gate_margin": _gate_margin(bundle, check_x, q),
        }
        meta["quantization"] = report
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        install_bundle(tmp, out_dir)
        return report
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _gate(h: Head, tmp: Path) -> dict[str, Any]:
    """The metadata's ``gate`` entry of head ``h`` (written to ``tmp``), or nothing."""
    if h.gate is None:
        return {}
    gblob = to_tflite(h.gate, tmp / h.gate_file, twin=h.gate)
    return {"gate": {"file": h.gate_file, "sha256": file_sha256(tmp / h.gate_file), "bytes": len(gblob)}}


def _gate_margin(bundle: ModelBundle, check_x: np.ndarray, exact: np.ndarray) -> float:
    """The least (gate score − head score) over ``check_x`` and the gated heads, as the sensor
    scores them; ``RuntimeError`` where a gate would let a window the head alerts on pass."""
    gated = [j for j, h in enumerate(bundle.heads) if h.gate is not None]
    if not gated or not len(check_x):
        return 0.0
    # With unreachable cutoffs nothing is rescored: the gated columns are the gates' scores.
    gates = bundle.score_all(check_x, cutoffs=np.full(len(bundle.heads), np.inf))
    margin = float(np.min(gates[:, gated] - exact[:, gated]))
    if margin < -GATE_SLACK:
        raise RuntimeError(
            f"a gate scores a window {-margin:.3g} below its head, more than the sensor's slack of "
            f"{GATE_SLACK:g}: it would hide alerts"
        )
    return margin
