"""A training run's manifest: what it was trained from, with what, where.

The report and the bundle's provenance carry it, so a bundle found on a sensor says which
captures (by sha256, not by name or path), which labels, which pipeline settings and
feature schema, which seed, which Spark master and which library versions made it.  The
per-trace inputs are the ones ``features`` recorded in each partition's ``_SUCCESS.json``
(trainer/extract.py), so nothing is hashed twice and the driver reads no capture.  Two runs
from the same inputs and settings have the same ``id``; what the run was on (master,
cores, versions) is kept beside it, outside the id, to say where they differ.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from .extract import MARKER

# What a trained bundle depends on beside our own code (its version is recorded too).
PACKAGES = ("numpy", "tensorflow-cpu", "keras", "pyspark", "elephas", "h5py", "ai-edge-litert", "pyarrow")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def trace_inputs(features_dir: str | Path, traces: set[str] | None = None) -> dict[str, Any]:
    """Each extracted trace's recorded inputs (capture, label and AGURIM sha256, settings,
    schema), or None for a partition written before markers were (its inputs are unknown)."""
    got: dict[str, Any] = {}
    for part in sorted(Path(features_dir).glob("trace=*")):
        name = part.name.split("=", 1)[1]
        if traces is not None and name not in traces:
            continue
        try:
            inputs = json.loads((part / MARKER).read_text())["inputs"]
        except (OSError, ValueError, KeyError, TypeError):
            inputs = None
        got[name] = inputs
    return got


def run_manifest(
    features_dir: str | Path,
    traces: set[str] | None,
    settings: dict[str, Any],
    master: str,
    parallelism: int,
    flowlstm: str,
) -> dict[str, Any]:
    """The manifest of a run over ``traces`` of ``features_dir`` with training ``settings``
    (epochs, seed, split, ...).  ``id`` is the sha256 of the inputs and settings."""
    inputs = trace_inputs(features_dir, traces)
    what = json.dumps({"traces": inputs, "settings": settings}, sort_keys=True, separators=(",", ":"))
    unrecorded = sorted(name for name, got in inputs.items() if got is None)
    return {
        "id": hashlib.sha256(what.encode()).hexdigest(),
        "traces": inputs,
        "unrecorded": unrecorded,
        "settings": settings,
        "spark": {"master": master, "default_parallelism": parallelism},
        "versions": {
            "flowlstm": flowlstm,
            "python": platform.python_version(),
            **{p: _version(p) for p in PACKAGES},
        },
    }
