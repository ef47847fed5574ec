"""The supervised head as an ensemble (trainer/model.py): the mean of its members' logits or the
least of them in each member's scale, in the executors' scorer and in the exported twin alike,
and a twin that converts to TFLite."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.model import build_lstm, ensemble_logits, ensemble_twin, inference_twin, logit_model, to_tflite

F = 6


def _members(k: int) -> list:
    import keras

    out = []
    for seed in range(k):
        keras.utils.set_random_seed(seed)
        out.append(build_lstm(F))
    return out


def _windows(n: int = 64) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, 3, F)).astype(np.float32)


def test_the_ensemble_scores_the_mean_of_its_members_logits():
    members, x, t = _members(3), _windows(), 1.7
    z = np.stack([logit_model(m).predict(x, verbose=0).ravel() for m in members])
    assert np.allclose(ensemble_logits(members).predict(x, verbose=0).ravel(), z.mean(axis=0), atol=1e-5)
    twin = ensemble_twin(members, t).predict(x, verbose=0).ravel()
    assert np.allclose(twin, 1 / (1 + np.exp(-z.mean(axis=0) / t)), atol=1e-5)
    # not any one member's score: the members differ, so the mean is a new function
    assert not np.allclose(twin, 1 / (1 + np.exp(-z[0] / t)), atol=1e-3)


def test_rule_all_scores_the_least_of_the_members_scaled_logits():
    # every member must call a window an attack: one member's overconfidence alone does not
    members, x, t, scales = _members(3), _windows(), 1.7, (2.0, 0.5, 1.0)
    z = np.stack([logit_model(m).predict(x, verbose=0).ravel() / s for m, s in zip(members, scales, strict=True)])
    least = z.min(axis=0)
    got = ensemble_logits(members, scales, "all").predict(x, verbose=0).ravel()
    assert np.allclose(got, least, atol=1e-5)
    twin = ensemble_twin(members, t, scales, "all").predict(x, verbose=0).ravel()
    assert np.allclose(twin, 1 / (1 + np.exp(-least / t)), atol=1e-5)
    # each member sets the least somewhere: the scales matter, and no one member is the head
    assert len(set(z.argmin(axis=0))) == 3
    assert not np.allclose(got, np.stack([logit_model(m).predict(x, verbose=0).ravel() for m in members]).min(0))
    with pytest.raises(ValueError, match="ensemble rule 'max' is not one of mean, all"):
        ensemble_logits(members, scales, "max")


def test_an_ensemble_of_one_is_the_paper_lstm():
    (m,) = _members(1)
    x = _windows()
    assert np.array_equal(ensemble_twin([m], 2.0).predict(x, verbose=0), inference_twin(m, 2.0).predict(x, verbose=0))
    assert np.array_equal(ensemble_logits([m]).predict(x, verbose=0), logit_model(m).predict(x, verbose=0))


@pytest.mark.slow
def test_the_ensemble_twin_converts_to_a_quantized_model_that_scores_alike(tmp_path):
    import tensorflow as tf

    members, x = _members(2), _windows(256)
    twin = ensemble_twin(members, 1.5)
    to_tflite(members[0], tmp_path / "e.tflite", twin=twin)
    interp = tf.lite.Interpreter(model_path=str(tmp_path / "e.tflite"))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    got = interp.get_tensor(out["index"]).ravel()
    want = twin.predict(x, verbose=0).ravel()
    assert np.max(np.abs(got - want)) < 0.05  # dynamic-range int8 weights


@pytest.mark.slow
def test_the_first_member_alone_bounds_rule_all_after_quantization(tmp_path):
    """The gate the sensor scores every window with (sensor/model.py) is the first member alone,
    in its scale: after dynamic-range quantization too, never below the least of the members."""
    import tensorflow as tf

    members, t, scales = _members(3), 1.7, (2.0, 0.5, 1.0)
    x = np.concatenate([_windows(2048), 8 * _windows(2048)])

    def tflite_scores(twin, name):
        to_tflite(members[0], tmp_path / name, twin=twin)
        interp = tf.lite.Interpreter(model_path=str(tmp_path / name))
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        interp.resize_tensor_input(inp["index"], x.shape)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"]).ravel()

    head = tflite_scores(ensemble_twin(members, t, scales, "all"), "head.tflite")
    gate = tflite_scores(ensemble_twin(members[:1], t, scales[:1]), "gate.tflite")
    assert np.all(gate >= head)
    assert np.mean(gate > head) > 0.1  # the other members set the least on many windows
