#!/usr/bin/env python3
"""Regenerate the hostile TFLite models in tests/data/models/ (see its README).

Each one loads in LiteRT but is wrong for the sensor in one way; the sensor's
loader must refuse it (or, for ``flat_output``, score it correctly).  Run with
the trainer venv, which has TensorFlow::

    .venv/trainer/bin/python scripts/make_model_fixtures.py [OUT_DIR]

Every model is built and converted in its own child process: the TFLite
converter can abort the interpreter, and one failure must not hide the others.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import flatbuffers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor.features import SCHEMA  # noqa: E402
from sensor.windows import WINDOW_SECONDS  # noqa: E402

SHAPE = (WINDOW_SECONDS, SCHEMA.size)
FLAT = WINDOW_SECONDS * SCHEMA.size
# flat_output's weights, so a test can compute its scores with NumPy.
FLAT_KERNEL = [((i % 7) - 3) * 0.01 for i in range(FLAT)]
FLAT_BIAS = 0.25


def _dense(keras, units: int = 1, activation: str | None = "sigmoid"):
    return keras.layers.Dense(units, activation=activation, kernel_initializer="zeros", bias_initializer="zeros")


def build(name: str):
    """The Keras model for fixture ``name`` and whether it is converted with int8 input."""
    import keras
    import numpy as np
    from keras import ops

    x = keras.Input(SHAPE)
    flat = keras.layers.Flatten()(x)
    if name == "int8_input":
        return keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(flat)), True
    if name == "flat_output":
        dense = keras.layers.Dense(1, activation="sigmoid")
        out = keras.layers.Reshape(())(dense(flat))  # (batch,), not (batch, 1)
        model = keras.Model(x, out)
        dense.set_weights([np.array(FLAT_KERNEL, np.float32).reshape(FLAT, 1), np.array([FLAT_BIAS], np.float32)])
        return model, False
    if name == "two_inputs":
        y = keras.Input(SHAPE)
        both = keras.layers.Flatten()(keras.layers.Add()([x, y]))
        return keras.Model([x, y], _dense(keras)(both)), False
    if name == "two_outputs":
        return keras.Model(x, [_dense(keras)(flat), _dense(keras)(flat)]), False
    if name == "nan_output":
        # log of a negative number: NaN for every window, so it would never alert.
        return keras.Model(x, keras.layers.Lambda(lambda s: ops.log(s - 2.0))(_dense(keras)(flat))), False
    if name == "busy_seven":
        # 0.5 on an all-zero window, 7.0 on any other: only a non-trivial probe finds it.
        busy = keras.layers.Lambda(lambda v: ops.where(ops.max(ops.abs(v), axis=1, keepdims=True) > 0, 7.0, 0.5))(flat)
        return keras.Model(x, busy), False
    if name == "nan_far_out":
        # Finite on ordinary windows, NaN far from the training data: 0 × exp(largest |input|)
        # is 0 until exp overflows (inputs beyond ~88), then 0 × inf.  IEEE arithmetic on any
        # CPU, where the fuzz campaign's damaged weight that first showed this was not.
        score = _dense(keras)(flat)
        far = keras.layers.Lambda(lambda v: 0.0 * ops.exp(ops.max(ops.abs(v), axis=1, keepdims=True)))(flat)
        return keras.Model(x, keras.layers.Add()([score, far])), False
    if name == "batch_collapsed":
        # One score for the whole batch, which a (batch, 1) reader would silently broadcast.
        mean = keras.layers.Lambda(lambda s: ops.mean(s, axis=0, keepdims=True))(_dense(keras)(flat))
        return keras.Model(x, mean), False
    raise SystemExit(f"unknown fixture {name!r}")


FIXTURES = (
    "int8_input",
    "flat_output",
    "two_inputs",
    "two_outputs",
    "nan_output",
    "busy_seven",
    "batch_collapsed",
    "nan_far_out",
)


def convert(name: str, out: Path) -> None:
    """Build fixture ``name`` and write its TFLite file to ``out`` (run in a child process)."""
    import numpy as np
    import tensorflow as tf

    model, int8 = build(name)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.normal(size=(1, *SHAPE)).astype(np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.float32
    out.write_bytes(conv.convert())


def variable_activations(flat_output: bytes) -> bytes:
    """flat_output with its activations (every tensor without constant data but the input) marked
    variable: what one flipped byte in a shared vtable did to it in the fuzz campaign (target
    ``model``, seed 9, input 11,151,103), which LiteRT loads and then overruns at batch size."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flat_output, 0))
    graph = model.subgraphs[0]
    for i, tensor in enumerate(graph.tensors):
        data = model.buffers[tensor.buffer].data
        if i not in graph.inputs and (data is None or len(data) == 0):
            tensor.isVariable = True
    builder = flatbuffers.Builder(len(flat_output))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        convert(sys.argv[2], Path(sys.argv[3]))
        return 0
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    failed = []
    for name in FIXTURES:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, str(out_dir / f"{name}.tflite")],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            failed.append(name)
            print(f"{name}: conversion failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        else:
            print(f"{name}.tflite: {(out_dir / f'{name}.tflite').stat().st_size} bytes")
    if "flat_output" not in failed:
        derived = out_dir / "variable_activations.tflite"
        derived.write_bytes(variable_activations((out_dir / "flat_output.tflite").read_bytes()))
        print(f"{derived.name}: {derived.stat().st_size} bytes")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
