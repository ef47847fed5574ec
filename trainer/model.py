"""The paper's LSTM, the normal-behaviour LSTM, their inference twins, and TFLite export.

Training uses Al Jallad et al.'s setup: LSTM(64, ReLU, dropout 0.5) → Dense(1,
sigmoid), binary cross-entropy, RMSprop(lr 0.001, rho 0.9).  The supervised head may be
an ensemble of such LSTMs trained with different seeds, scoring sigmoid of the mean of
their logits, or of the least of them, each member's in its own scale (``ensemble_logits``,
``ensemble_twin``).

The normal-behaviour head is the paper's "network language" taken literally: an
LSTM encoder-decoder (64 units, ReLU, same optimizer) trained on benign windows only
to reproduce the [t−1, t, t+1] sequence.  Its score is how badly it reproduces a
window: the squared error of every feature of every second, each divided by that
feature's mean squared error on benign training windows, the largest of them taken,
squashed to [0, 1) as 1 − exp(−e / s), s the largest e of the benign training
windows.  The scorer is built from stock layers that are TFLite builtins (subtract,
multiply, fixed dense maps, max pooling, exp), so the sensor runs it like any other
head.

A Keras-3 LSTM as
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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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


def build_normal(n_features: int, window: int = 3, *, unroll: bool = False) -> keras.Model:
    """LSTM encoder (64, relu) → repeat → LSTM decoder (64, relu) → per-second Dense(F), MSE loss."""
    import keras
    from keras import layers

    inp = keras.Input((window, n_features))
    h = layers.LSTM(UNITS, activation="relu", unroll=unroll)(inp)
    h = layers.RepeatVector(window)(h)
    h = layers.LSTM(UNITS, activation="relu", return_sequences=True, unroll=unroll)(h)
    out = layers.TimeDistributed(layers.Dense(n_features))(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=LEARNING_RATE, rho=RHO), loss="mse")
    return model


def normal_scorer(
    trained: keras.Model, feature_mse: np.ndarray, error_scale: float, *, unroll: bool = True
) -> keras.Model:
    """The normal head as the sensor runs it: window → 1 − exp(−e / error_scale).

    e is the largest, over seconds and features, squared reconstruction error divided by
    that feature's mean on benign training windows (``feature_mse``, (F,)): the one feature
    most unlike normal decides, so a scanner's port fan-out is not averaged away among 240
    ordinary values (the mean did that: scans scored like background).  ``error_scale`` is
    the largest e on those windows, so the score stays well inside float32's resolution
    below 1 where thresholds fall.  Weights are copied.
    """
    import keras
    from keras import layers

    window, n_features = trained.input_shape[1:]
    ae = build_normal(n_features, window, unroll=unroll)
    ae.set_weights(trained.get_weights())
    inp = keras.Input((window, n_features))
    rec = ae(inp)
    diff = layers.Subtract()([rec, inp])
    sq = layers.Multiply()([diff, diff])
    # each feature's squared error over its benign mean (and the scale): a fixed diagonal
    rel = layers.Dense(n_features, use_bias=False, name="relative_error")(sq)
    worst = layers.GlobalMaxPooling1D()(layers.Reshape((window * n_features, 1))(rel))
    neg = layers.Dense(1, use_bias=False, name="negate")(worst)
    score = layers.Dense(1, name="one_minus")(layers.Activation("exponential")(neg))
    model = keras.Model(inp, score)
    diag = np.diag(1.0 / (feature_mse * error_scale)).astype(np.float32)
    model.get_layer("relative_error").set_weights([diag])
    model.get_layer("negate").set_weights([np.array([[-1.0]], np.float32)])
    model.get_layer("one_minus").set_weights([np.array([[-1.0]], np.float32), np.array([1.0], np.float32)])
    return model


def inference_twin(trained: keras.Model, temperature: float = 1.0, *, unroll: bool = True) -> keras.Model:
    """An unrolled, dropout-free copy of a trained model, convertible to TFLite: the same
    weights, with the output layer's divided by ``temperature`` (sigmoid(z / T))."""
    window, n_features = trained.input_shape[1:]
    twin = build_lstm(n_features, window, dropout=0.0, unroll=unroll)
    weights = trained.get_weights()
    weights[-2] = weights[-2] / temperature  # the output Dense's kernel and bias
    weights[-1] = weights[-1] / temperature
    twin.set_weights(weights)
    return twin


ENSEMBLE_RULES = ("mean", "all")


def _combine(logits: list[Any], rule: str) -> Any:
    """The members' logits as one: their mean, or (``all``: every member must call the window
    an attack) the least of them."""
    from keras import layers

    if rule not in ENSEMBLE_RULES:
        raise ValueError(f"ensemble rule {rule!r} is not one of {', '.join(ENSEMBLE_RULES)}")
    return layers.Average()(logits) if rule == "mean" else layers.Minimum()(logits)


def ensemble_twin(
    members: Sequence[keras.Model], temperature: float = 1.0, scales: Sequence[float] = (), rule: str = "mean"
) -> keras.Model:
    """The inference twin of an ensemble of supervised LSTMs: sigmoid(combined logits / T), each
    member's logits divided by its ``scales`` entry (1 if none) before they are combined by
    ``rule``, each member unrolled and dropout-free (one member: ``inference_twin``)."""
    if len(members) == 1:
        return inference_twin(members[0], temperature * (scales[0] if scales else 1.0))
    import keras
    from keras import layers

    inp = keras.Input(members[0].input_shape[1:])
    each = scales or [1.0] * len(members)
    logits = [logit_model(m, temperature * s, unroll=True)(inp) for m, s in zip(members, each, strict=True)]
    return keras.Model(inp, layers.Activation("sigmoid")(_combine(logits, rule)))


def centre_only_twin(trained: keras.Model, temperature: float = 1.0) -> keras.Model:
    """The no-context baseline (trained on the centre second alone) as the sensor runs it:
    a (3, F) window cropped to its centre second, then the unrolled twin."""
    import keras
    from keras import layers

    _, n_features = trained.input_shape[1:]
    inp = keras.Input((3, n_features))
    centre = layers.Cropping1D((1, 1))(inp)
    return keras.Model(inp, inference_twin(trained, temperature)(centre))


def linear_scorer(coef: np.ndarray, intercept: float, temperature: float, window: int, n_features: int) -> keras.Model:
    """A linear model on flattened windows (the SVM baseline) as a head: sigmoid((w·x + b) / T)."""
    import keras
    from keras import layers

    inp = keras.Input((window, n_features))
    dense = layers.Dense(1, activation="sigmoid", name="margin")
    out = dense(layers.Flatten()(inp))
    model = keras.Model(inp, out)
    kernel = (np.asarray(coef, np.float64) / temperature).astype(np.float32).reshape(-1, 1)
    dense.set_weights([kernel, np.array([intercept / temperature], np.float32)])
    return model


def logit_model(trained: keras.Model, temperature: float = 1.0, *, unroll: bool = False) -> keras.Model:
    """The supervised LSTM without its sigmoid: windows → z / T, z = kernel · h + bias (float32,
    not saturated as sigmoid(z) is), the same weights, dropout-free: for scoring in the
    executors, and (unrolled) as an ensemble member in ``ensemble_twin``."""
    import keras
    from keras import layers

    window, n_features = trained.input_shape[1:]
    model = keras.Sequential(
        [keras.Input((window, n_features)), layers.LSTM(UNITS, activation="relu", unroll=unroll), layers.Dense(1)]
    )
    weights = trained.get_weights()
    weights[-2] = weights[-2] / temperature  # the output Dense's kernel and bias
    weights[-1] = weights[-1] / temperature
    model.set_weights(weights)
    return model


def ensemble_logits(members: Sequence[keras.Model], scales: Sequence[float] = (), rule: str = "mean") -> keras.Model:
    """``logit_model`` of an ensemble: its members' logits, each divided by its ``scales`` entry
    (1 if none), combined by ``rule`` (one member: its own)."""
    each = scales or [1.0] * len(members)
    if len(members) == 1:
        return logit_model(members[0], each[0])
    import keras

    window, n_features = members[0].input_shape[1:]
    inp = keras.Input((window, n_features))
    return keras.Model(inp, _combine([logit_model(m, s)(inp) for m, s in zip(members, each, strict=True)], rule))


TEMPERATURE_TOP = 8.0  # the top benign training logit maps to sigmoid(8) = 0.99966


def temperature_for(z_benign: np.ndarray) -> float:
    """The temperature that keeps every benign training score below sigmoid(``TEMPERATURE_TOP``).

    A false-alert budget of a few in 10,000 flows puts the threshold among the highest
    benign scores; where those are sigmoid(30) they are 1.0 in float32 and no threshold can
    separate them.  Dividing logits by T (monotone: the ranking is unchanged) keeps them
    where float32 resolves them.
    """
    top = float(np.max(z_benign)) if len(z_benign) else 0.0
    return max(1.0, top / TEMPERATURE_TOP)


_CONVERT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, tensorflow as tf
model = keras.models.load_model(sys.argv[1], compile=False)
conv = tf.lite.TFLiteConverter.from_keras_model(model)
conv.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range: int8 weights, float activations
open(sys.argv[2], "wb").write(conv.convert())
"""


def to_tflite(trained: keras.Model, out_path: str | Path, *, twin: keras.Model | None = None) -> bytes:
    """Convert a trained model (via its twin: ``inference_twin`` unless given) to a
    dynamic-range quantized TFLite file."""
    twin = twin if twin is not None else inference_twin(trained)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "twin.keras"
        twin.save(src)
        proc = subprocess.run([sys.executable, "-c", _CONVERT, str(src), str(out_path)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise RuntimeError(f"TFLite conversion failed (exit {proc.returncode}): {' | '.join(tail)}")
    return Path(out_path).read_bytes()
