"""The paper's LSTM, its inference twin, and TFLite export.

Training uses Al Jallad et al.'s setup: LSTM(64, ReLU, dropout 0.5) → Dense(1,
sigmoid), binary cross-entropy, RMSprop(lr 0.001, rho 0.9).  A Keras-3 LSTM as
trained (cuDNN-style fused loop) does not convert to TFLite, so export copies
the weights into an unrolled, dropout-free twin — dropout is inactive at
inference anyway, so the twin computes the same function — and converts that
with dynamic-range quantization in a child process (the converter can crash
the interpreter on loop graphs; a crash there must not take the trainer down).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

UNITS = 64
DROPOUT = 0.5
LEARNING_RATE = 0.001
RHO = 0.9


def build_lstm(n_features: int, window: int = 3, *, dropout: float = DROPOUT, unroll: bool = False) -> keras.Model:
    """LSTM(64, relu) → Dense(1, sigmoid) over (window, n_features) inputs, compiled as in the paper."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((window, n_features)),
            layers.LSTM(UNITS, activation="relu", dropout=dropout, unroll=unroll),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=LEARNING_RATE, rho=RHO),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def inference_twin(trained: keras.Model) -> keras.Model:
    """An unrolled, dropout-free copy of a trained model: same weights, convertible to TFLite."""
    window, n_features = trained.input_shape[1:]
    twin = build_lstm(n_features, window, dropout=0.0, unroll=True)
    twin.set_weights(trained.get_weights())
    return twin


_CONVERT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, tensorflow as tf
model = keras.models.load_model(sys.argv[1], compile=False)
conv = tf.lite.TFLiteConverter.from_keras_model(model)
conv.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range: int8 weights, float activations
open(sys.argv[2], "wb").write(conv.convert())
"""


def to_tflite(trained: keras.Model, out_path: str | Path) -> bytes:
    """Convert a trained model (via its twin) to a dynamic-range quantized TFLite file."""
    twin = inference_twin(trained)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "twin.keras"
        twin.save(src)
        proc = subprocess.run([sys.executable, "-c", _CONVERT, str(src), str(out_path)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise RuntimeError(f"TFLite conversion failed (exit {proc.returncode}): {' | '.join(tail)}")
    return Path(out_path).read_bytes()
