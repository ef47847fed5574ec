"""Export: trained Keras model → the sensor's bundle (``model.tflite`` + ``metadata.json``)."""

from __future__ import annotations

import json
import os
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
    METADATA_FILE,
    MODEL_FILE,
    ModelBundle,
    Normalization,
    file_sha256,
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

    @property
    def file(self) -> str:
        return f"{self.name}.tflite"


class QuantizationReport(TypedDict):
    """How the quantized bundle's decisions compare with the float model's."""

    windows: int
    agreement: float  # fraction of windows on the same side of the threshold
    max_abs_diff: float
    bytes: int  # model.tflite size


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
    alerts when any head scores at or above its threshold.
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
        }
        meta["quantization"] = report
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        # mkdtemp made it private; the sensor often runs as its own user and must read it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for member in tmp.iterdir():
            os.chmod(member, 0o666 & ~umask)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        return report
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
