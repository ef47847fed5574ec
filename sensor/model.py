"""Model stage: a model bundle (``model.tflite`` + ``metadata.json``) scoring windows.

The bundle is what the trainer exports and the sensor loads.  Loading checks,
in order: the metadata parses and names a known bundle format; its feature
schema is exactly the one this sensor computes; the TFLite file's sha256 is
the one recorded; LiteRT accepts the model and its input is (batch, 3, F).
Any failure is a ``ModelError`` saying which check failed and how to fix it,
so a bad new bundle never replaces a good one.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FlowlstmError
from .features import SCHEMA
from .windows import WINDOW_SECONDS

BUNDLE_FORMAT = "flowlstm-model"
BUNDLE_FORMAT_VERSION = 1
MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
DEFAULT_BUNDLE = Path(__file__).parent / "models" / "default"
_SCORE_BATCH = 1024  # a fixed input shape avoids re-allocating tensors per call


class ModelError(FlowlstmError):
    """A model bundle cannot be used."""

    exit_code = 78  # EX_CONFIG: the bundle is part of the sensor's configuration


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Normalization:
    """Per-feature affine map fitted on training data: (x - mean) / scale."""

    mean: np.ndarray
    scale: np.ndarray

    def apply(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalized float32 copy of windows ``x`` (N, 3, F), written into ``out`` if given."""
        if out is None:
            out = np.empty(x.shape, np.result_type(x, self.mean))
        # In place: the arithmetic of (x - mean) / scale with a third of the memory traffic.
        np.subtract(x, self.mean, out=out)
        out /= self.scale
        # Absent seconds stay exactly zero, so the model sees "silent", not "average".
        out[~(x[..., 0] > 0)] = 0
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale]}


def validate_metadata(meta: dict, where: str) -> Normalization:
    """Check a bundle's metadata against this sensor; return its normalization."""
    if meta.get("format") != BUNDLE_FORMAT or meta.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise ModelError(
            f"{where}: not a flowlstm model bundle of format version {BUNDLE_FORMAT_VERSION} "
            f"(found format={meta.get('format')!r} version={meta.get('format_version')!r})"
        )
    schema = meta.get("schema") or {}
    if schema.get("version") != SCHEMA.version or schema.get("names") != list(SCHEMA.names):
        raise ModelError(
            f"{where}: trained on feature schema version {schema.get('version')}, this sensor "
            f"computes version {SCHEMA.version}; retrain with 'flowlstm-train' from this release"
        )
    if schema.get("window") != WINDOW_SECONDS:
        raise ModelError(f"{where}: model window is {schema.get('window')} seconds, the sensor uses {WINDOW_SECONDS}")
    try:
        norm = meta["normalization"]
        mean = np.asarray(norm["mean"], dtype=np.float32)
        scale = np.asarray(norm["scale"], dtype=np.float32)
        threshold = float(meta["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: metadata lacks a valid {exc} entry; re-export the bundle") from None
    if mean.shape != (SCHEMA.size,) or scale.shape != (SCHEMA.size,) or not np.all(scale > 0):
        raise ModelError(f"{where}: normalization must have {SCHEMA.size} means and positive scales")
    if not 0.0 < threshold < 1.0:
        raise ModelError(f"{where}: threshold {threshold} is not between 0 and 1")
    return Normalization(mean, scale)


class ModelBundle:
    """A loaded, verified bundle that scores windows with LiteRT on one thread."""

    def __init__(self, path: str | os.PathLike = DEFAULT_BUNDLE):
        self.path = Path(path)
        meta_path = self.path / METADATA_FILE
        model_path = self.path / MODEL_FILE
        try:
            self.metadata = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{meta_path}: missing; a bundle is a directory with {MODEL_FILE} and {METADATA_FILE}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{meta_path}: unreadable metadata: {exc}") from None
        if not isinstance(self.metadata, dict):
            raise ModelError(f"{meta_path}: metadata must be a JSON object")
        self.normalization = validate_metadata(self.metadata, str(meta_path))
        self.threshold = float(self.metadata["threshold"])
        try:
            # Loaded from memory, not mapped from the file: an operator copying a new model over
            # this path must not pull pages from under the running interpreter (SIGBUS), and the
            # bytes checked are the bytes scored with.
            content = model_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{model_path}: cannot read: {exc.strerror}") from None
        self.sha256 = hashlib.sha256(content).hexdigest()
        if self.sha256 != self.metadata.get("sha256"):
            raise ModelError(
                f"{model_path}: sha256 {self.sha256[:16]}… does not match the metadata's "
                f"{str(self.metadata.get('sha256'))[:16]}…; the bundle is damaged or mixed up — re-copy it"
            )
        self._interp = self._load(model_path, content)

    def _load(self, model_path: Path, content: bytes):
        from ai_edge_litert.interpreter import Interpreter

        try:
            interp = Interpreter(model_content=content, num_threads=1)
            inp = interp.get_input_details()[0]
            if list(inp["shape"][1:]) != [WINDOW_SECONDS, SCHEMA.size]:
                raise ModelError(
                    f"{model_path}: model input is {list(inp['shape'])}, expected [batch, {WINDOW_SECONDS}, {SCHEMA.size}]"
                )
            interp.resize_tensor_input(inp["index"], [_SCORE_BATCH, WINDOW_SECONDS, SCHEMA.size])
            interp.allocate_tensors()
        except ModelError:
            raise
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{model_path}: LiteRT cannot load it: {exc}") from None
        self._in = inp["index"]
        self._out = interp.get_output_details()[0]["index"]
        return interp

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.path.name))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores in [0, 1] for raw windows x of shape (N, 3, F)."""
        n = len(x)
        out = np.empty(n, dtype=np.float32)
        buf = np.zeros((_SCORE_BATCH, WINDOW_SECONDS, SCHEMA.size), dtype=np.float32)
        for i in range(0, n, _SCORE_BATCH):
            part = x[i : i + _SCORE_BATCH]
            # Normalizing batch by batch keeps the working set in cache.
            self.normalization.apply(part, out=buf[: len(part)])
            buf[len(part) :] = 0
            self._interp.set_tensor(self._in, buf)
            self._interp.invoke()
            out[i : i + len(part)] = self._interp.get_tensor(self._out)[: len(part), 0]
        return out
