"""scripts/make_model_fixtures.py still makes the hostile models tests/data/models/ holds.

The converter's bytes are not reproducible across TensorFlow versions, so the
regenerated models are compared by what the sensor's loader looks at: their
input and output tensors, and their scores on the same windows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
MODELS = DATA / "models"


def signature(path: Path) -> tuple[list, list, np.ndarray]:
    """Inputs and outputs (shape signature, dtype) and the scores of two fixed windows (the
    number of variable tensors instead for a model with any: LiteRT overruns them at batch 2)."""
    from ai_edge_litert.interpreter import Interpreter

    from sensor.model import _variable_tensors

    it = Interpreter(model_content=path.read_bytes())
    ins, outs = it.get_input_details(), it.get_output_details()
    sig = (
        [(d["shape_signature"].tolist(), np.dtype(d["dtype"]).name) for d in ins],
        [(d["shape_signature"].tolist(), np.dtype(d["dtype"]).name) for d in outs],
    )
    if len(ins) > 1 or ins[0]["dtype"] != np.float32:
        return (*sig, np.array([]))
    if variable := _variable_tensors(path.read_bytes()):
        return (*sig, np.array([variable]))
    it.resize_tensor_input(ins[0]["index"], [2, *ins[0]["shape"][1:]])
    it.allocate_tensors()
    x = np.zeros((2, *ins[0]["shape"][1:]), np.float32)
    x[1] = np.linspace(-1, 1, x[1].size).reshape(x[1].shape)
    it.set_tensor(ins[0]["index"], x)
    it.invoke()
    return (*sig, it.get_tensor(outs[0]["index"]))


@pytest.mark.slow
def test_regenerated_fixtures_match_the_committed_ones(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_model_fixtures.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    committed = sorted(p.name for p in MODELS.glob("*.tflite"))
    assert sorted(p.name for p in tmp_path.glob("*.tflite")) == committed and len(committed) == 9
    for name in committed:
        want, got = signature(MODELS / name), signature(tmp_path / name)
        assert got[:2] == want[:2], name
        np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-6, err_msg=name)
