"""Export: trained Keras model → the sensor's bundle (``model.tflite`` + ``metadata.json``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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

from .model import inference_twin, to_tflite

NORMAL_FILE = "normal.tflite"

if TYPE_CHECKING:
    import keras


class QuantizationReport(TypedDict):
    """How the quantized bundle's decisions compare with the float model's."""

    windows: int
    agreement: float  # fraction of windows on the same side of the threshold
    max_abs_diff: float
    bytes: int  # model.tflite size


def export_bundle(
    model: keras.Model,
    out_dir: str | Path,
    normalization: Normalization,
    threshold: float,
    *,
    name: str,
    provenance: dict[str, Any],
    metrics: dict[str, dict[str, float]],
    check_x: np.ndarray,
    temperature: float = 1.0,
    normal: tuple[keras.Model, float] | None = None,
) -> QuantizationReport:
    """Write the bundle atomically, load it back with the sensor's loader and compare
    its decisions with the float model's on ``check_x`` (normalized by the caller's
    normalization inside the bundle).  Returns the quantization report.

    The supervised head is exported as sigmoid(z / ``temperature``) (``inference_twin``).
    ``normal`` is the normal-behaviour head's scorer (``trainer.model.normal_scorer``, built
    unrolled) and its threshold: written as ``normal.tflite`` and listed in ``heads``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out_dir.parent))
    try:
        twin = inference_twin(model, temperature)
        blob = to_tflite(model, tmp / MODEL_FILE, twin=twin)
        heads: list[dict[str, Any]] = []
        if normal is not None:
            scorer, normal_threshold = normal
            nblob = to_tflite(scorer, tmp / NORMAL_FILE, twin=scorer)
            heads.append(
                {
                    "name": "normal",
                    "file": NORMAL_FILE,
                    "sha256": file_sha256(tmp / NORMAL_FILE),
                    "threshold": float(normal_threshold),
                    "model": {"type": "lstm-autoencoder", "units": 64, "activation": "relu", "bytes": len(nblob)},
                }
            )
        meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "name": name,
            "schema": {**SCHEMA.to_dict(), "window": WINDOW_SECONDS},
            "normalization": normalization.to_dict(),
            "threshold": float(threshold),
            "model": {
                "type": "lstm",
                "units": 64,
                "activation": "relu",
                "quantization": "dynamic-range",
                "temperature": float(temperature),
            },
            "training": provenance,
            "metrics": metrics,
            "sha256": file_sha256(tmp / MODEL_FILE),
            "head": "supervised",
            "heads": heads,
        }
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        bundle = ModelBundle(tmp)
        q = bundle.score_all(check_x)
        xn = normalization.apply(check_x)
        floats = [twin.predict(xn, batch_size=4096, verbose=0).ravel()]
        if normal is not None:
            floats.append(normal[0].predict(xn, batch_size=4096, verbose=0).ravel())
        f = np.stack(floats, axis=1)
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
