"""The shipped model bundle: it loads in LiteRT, scores, and bad bundles are refused clearly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor import model
from sensor.features import SCHEMA
from sensor.model import (
    DEFAULT_BUNDLE,
    METADATA_FILE,
    METADATA_LIMIT,
    MODEL_FILE,
    MODEL_LIMIT,
    ModelBundle,
    ModelError,
    file_sha256,
)
from sensor.pipeline import run_files

from ..conftest import ATTACKS, DATA, MAWI_PCAP


@pytest.fixture
def copy(tmp_path):
    d = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, d)
    return d


def edit_meta(d, **changes):
    meta = json.loads((d / METADATA_FILE).read_text())
    for k, v in changes.items():
        meta[k] = v
    (d / METADATA_FILE).write_text(json.dumps(meta))


def test_default_bundle_loads_and_is_small():
    b = ModelBundle()
    assert 0 < b.threshold < 1
    meta = b.metadata
    # under 100 kB per LSTM: the shipped supervised head is three (scripts/train-default.sh)
    assert meta["model"]["ensemble"] == 3 and meta["model"]["ensemble_rule"] == "all"
    assert (DEFAULT_BUNDLE / MODEL_FILE).stat().st_size < 100_000 * meta["model"]["ensemble"]
    assert meta["schema"]["version"] == SCHEMA.version and meta["schema"]["names"] == list(SCHEMA.names)
    assert meta["quantization"]["agreement"] >= 0.998
    assert meta["training"]["traces"]  # provenance is recorded


def test_default_bundle_separates_a_flood_from_background():
    b = ModelBundle()
    assert b.head_names == ("supervised", "normal")

    def fired(path):
        return np.concatenate(
            [(b.score_all(w.x) >= b.thresholds).any(axis=1) for o in run_files([path]) for w in o.windows]
        )

    assert np.mean(fired(MAWI_PCAP)) < 0.02
    assert np.mean(fired(ATTACKS / "pkt.TCP.synflood.spoofed.pcap")) > 0.5


def test_the_default_gate_bounds_the_ensemble_and_decides_alike():
    """The shipped supervised head is gated by its first member: on real background and flood
    windows the gate never scores below the ensemble, and the sensor's gated scoring fires on
    the same windows with the same scores there, having run the ensemble on few of them."""
    b = ModelBundle()
    assert b.heads[0].gate is not None and b.metadata["quantization"]["gate_margin"] >= -model.GATE_SLACK
    pcaps = [MAWI_PCAP, ATTACKS / "pkt.TCP.synflood.spoofed.pcap"]
    x = np.concatenate([w.x for p in pcaps for o in run_files([p]) for w in o.windows])
    exact, gate = b.score_all(x), b.score_all(x, cutoffs=np.full(2, np.inf))
    assert np.all(gate[:, 0] >= exact[:, 0] - model.GATE_SLACK) and np.array_equal(gate[:, 1], exact[:, 1])
    got = b.score_all(x, cutoffs=b.thresholds)
    fired = (exact >= b.thresholds).any(axis=1)
    assert fired.any() and np.array_equal((got >= b.thresholds).any(axis=1), fired)
    assert np.array_equal(got[fired], exact[fired])
    near = ~(gate < b.thresholds - model.GATE_SLACK).all(axis=1)
    assert near.mean() < 0.5  # the flood's windows and few others


def test_scores_are_batch_independent():
    b = ModelBundle()
    x = np.concatenate([w.x for o in run_files([ATTACKS / "amp.TCP.reflection.SYNACK.pcap"]) for w in o.windows])
    whole = b.score(x)
    parts = np.concatenate([b.score(x[i : i + 333]) for i in range(0, len(x), 333)])
    assert np.array_equal(whole, parts)


def test_tampered_model_is_refused(copy):
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 .* does not match"):
        ModelBundle(copy)


def test_other_schema_version_is_refused(copy):
    meta = json.loads((copy / METADATA_FILE).read_text())
    edit_meta(copy, schema={**meta["schema"], "version": SCHEMA.version + 1})
    with pytest.raises(ModelError, match="feature schema version"):
        ModelBundle(copy)


def test_broken_metadata_is_refused(copy):
    (copy / METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable metadata"):
        ModelBundle(copy)
    (copy / METADATA_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        ModelBundle(copy)


def test_bad_threshold_and_normalization_are_refused(copy):
    edit_meta(copy, threshold=1.5)
    with pytest.raises(ModelError, match="threshold"):
        ModelBundle(copy)
    edit_meta(copy, threshold=0.5, normalization={"mean": [0.0], "scale": [1.0]})
    with pytest.raises(ModelError, match="normalization"):
        ModelBundle(copy)


def test_garbage_model_with_matching_sha_is_refused_by_litert(copy):
    (copy / MODEL_FILE).write_bytes(b"\x00" * 4096)
    edit_meta(copy, sha256=file_sha256(copy / MODEL_FILE))
    with pytest.raises(ModelError, match="LiteRT cannot load it"):
        ModelBundle(copy)


OVERWRITE = """
import sys
import numpy as np
from pathlib import Path
from sensor.model import ModelBundle, MODEL_FILE
from sensor.pipeline import run_files
b = ModelBundle(sys.argv[1])
x = np.concatenate([w.x for o in run_files([sys.argv[2]]) for w in o.windows])
before = b.score(x)
(Path(sys.argv[1]) / MODEL_FILE).write_bytes(b"garbage")  # cp over the live file, as an operator would
print(np.array_equal(before, b.score(x)))
"""


def test_overwriting_the_model_file_does_not_disturb_the_loaded_model(copy):
    # In a child process: a model mapped from its file dies of SIGBUS here.
    out = subprocess.run(
        [sys.executable, "-c", OVERWRITE, str(copy), str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "True", (out.returncode, out.stderr[-2000:])


# Hostile bundles (red-team findings): each one is refused at load with a ModelError naming
# the file and the check, instead of crashing, hanging or scoring garbage later.

MODELS = DATA / "models"  # tiny hostile TFLite files, see their README


def with_model(d, name: str):
    """Bundle ``d`` with the fixture model ``name`` and a matching sha256."""
    shutil.copyfile(MODELS / f"{name}.tflite", d / MODEL_FILE)
    edit_meta(d, sha256=file_sha256(d / MODEL_FILE))
    return d


@pytest.mark.parametrize("value", [[], ["names"], "v1", 7, True])
def test_schema_of_the_wrong_json_type_is_refused(copy, value):
    edit_meta(copy, schema=value)
    with pytest.raises(ModelError, match=f"{METADATA_FILE}: 'schema' must be a JSON object"):
        ModelBundle(copy)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("names", "present,log_pkts_fwd", "schema.names must be a list"),
        ("names", [1] * SCHEMA.size, "schema.names must be a list"),
        ("names", list(reversed(SCHEMA.names)), "schema.names differ"),
        ("version", True, "feature schema version True"),
        ("version", "1", "feature schema version '1'"),
        ("window", 3.0, "model window is 3.0 seconds"),
        ("window", [3], "model window is a JSON array seconds"),
    ],
)
def test_schema_fields_of_the_wrong_type_are_refused(copy, field, value, message):
    meta = json.loads((copy / METADATA_FILE).read_text())
    edit_meta(copy, schema={**meta["schema"], field: value})
    with pytest.raises(ModelError, match=message):
        ModelBundle(copy)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": True}, "format version 1 .found format='flowlstm-model' version=True"),
        ({"threshold": "0.5"}, "threshold '0.5' is not a number"),
        ({"threshold": float("nan")}, "threshold nan is not a number between 0 and 1"),
        ({"threshold": 10**400}, "threshold .* is not a number between 0 and 1"),
        ({"normalization": [0.0, 1.0]}, "'normalization' must be a JSON object"),
        (
            {"normalization": {"mean": "0", "scale": [1.0] * SCHEMA.size}},
            rf"normalization.mean must be a list of {SCHEMA.size}",
        ),
        ({"normalization": {"mean": [True] * SCHEMA.size, "scale": [1.0] * SCHEMA.size}}, r"normalization.mean must"),
        (
            {"normalization": {"mean": [0.0] * SCHEMA.size, "scale": [1.0] * (SCHEMA.size - 1) + [float("inf")]}},
            rf"normalization.scale\[{SCHEMA.size - 1}\] is inf",
        ),
        (
            {"normalization": {"mean": [0.0] * (SCHEMA.size - 1) + [1e39], "scale": [1.0] * SCHEMA.size}},
            rf"normalization.mean\[{SCHEMA.size - 1}\] is 1e\+39, not a finite float32",
        ),
        (
            {"normalization": {"mean": [0.0] * SCHEMA.size, "scale": [1.0] * 5 + [1e-30] + [1.0] * (SCHEMA.size - 6)}},
            r"normalization.scale\[5\] \(rev_pkt_ratio\) is 1e-30; scales must be at least 1e-06",
        ),
        ({"normalization": {"mean": [0.0] * SCHEMA.size, "scale": [-1.0] * SCHEMA.size}}, r"scale\[0\] .* is -1"),
        ({"sha256": [["d6"]]}, "'sha256' must be the model file's sha256 in hex, found a JSON array"),
        ({"name": {"n": 1}}, "'name' must be printable text"),
        ({"gate": "supervised-gate.tflite"}, "gate must be a JSON object with 'file' and 'sha256'"),
        ({"gate": {"file": "model.tflite", "sha256": "0" * 64}}, r"gate.file must name a .tflite file in the bundle"),
        ({"gate": {"file": "../gate.tflite", "sha256": "0" * 64}}, r"gate.file must name a .tflite file in the bundle"),
        ({"gate": {"file": "normal.tflite", "sha256": "0" * 64}}, "two heads share a name or a file"),
        ({"gate": {"file": "g.tflite", "sha256": "0" * 63}}, r"gate.sha256 must be the gate file's sha256 in hex"),
        ({"name": "evil\n2026-01-01 ERROR forged log line"}, "'name' must be printable text"),
    ],
)
def test_metadata_fields_of_the_wrong_type_or_range_are_refused(copy, changes, message):
    edit_meta(copy, **changes)
    with pytest.raises(ModelError, match=message):
        ModelBundle(copy)


def test_scale_at_the_trainers_floor_is_accepted(copy):
    # trainer/dataset.py keeps scales above 1e-6 and casts to float32: those must load.
    meta = json.loads((copy / METADATA_FILE).read_text())
    scale = [float(np.float32(1e-6))] + meta["normalization"]["scale"][1:]
    edit_meta(copy, normalization={**meta["normalization"], "scale": scale})
    assert ModelBundle(copy).normalization.scale[0] == np.float32(1e-6)


def test_ignored_features_enter_every_head_as_zero(copy):
    # A bundle trained without some features (train --ignore-features) scores as if they were
    # at their mean, whatever the sensor measured: here the model sees the same input for two
    # windows that differ only in an ignored feature.
    meta = json.loads((copy / METADATA_FILE).read_text())
    x = np.concatenate([w.x for o in run_files([str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap")]) for w in o.windows])
    i = SCHEMA.names.index("ctx_tcp_ratio")
    y = x.copy()
    y[:, :, i] = np.where(y[:, :, 0] > 0, 1.0 - y[:, :, i], 0)
    assert "ctx_tcp_ratio" in meta["normalization"]["ignored"]  # the shipped bundle's default
    edit_meta(copy, normalization={k: v for k, v in meta["normalization"].items() if k != "ignored"})
    every = ModelBundle(copy)
    assert not np.array_equal(every.score_all(x), every.score_all(y))
    edit_meta(copy, normalization={**meta["normalization"], "ignored": ["ctx_udp_ratio", "ctx_tcp_ratio"]})
    b = ModelBundle(copy)
    assert b.normalization.ignored == (i, i + 1)
    np.testing.assert_array_equal(b.score_all(x), b.score_all(y))
    assert b.normalization.to_dict()["ignored"] == ["ctx_tcp_ratio", "ctx_udp_ratio"]  # schema order
    assert "ignored" not in every.normalization.to_dict()


@pytest.mark.parametrize(
    "ignored, found",
    [
        ("ctx_tcp_ratio", "'ctx_tcp_ratio'"),
        (["present"], "a JSON array"),
        (["no_such_feature"], "a JSON array"),
        (["ctx_tcp_ratio", "ctx_tcp_ratio"], "a JSON array"),
        ([3], "a JSON array"),
    ],
)
def test_bad_ignored_features_are_refused(copy, ignored, found):
    meta = json.loads((copy / METADATA_FILE).read_text())
    edit_meta(copy, normalization={**meta["normalization"], "ignored": ignored})
    with pytest.raises(
        ModelError, match=f"normalization.ignored must be a list of distinct feature names.*found {found}"
    ):
        ModelBundle(copy)


def test_deeply_nested_metadata_is_refused(copy):
    depth = 100_000
    (copy / METADATA_FILE).write_text('{"training": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(ModelError, match="unreadable metadata: RecursionError"):
        ModelBundle(copy)


def test_metadata_over_the_size_limit_is_refused(copy):
    meta = (copy / METADATA_FILE).read_text()
    (copy / METADATA_FILE).write_text(meta[:-2] + ', "pad": "' + "x" * METADATA_LIMIT + '"}')
    with pytest.raises(ModelError, match="over the 4 MiB limit"):
        ModelBundle(copy)


def test_model_over_the_size_limit_is_refused_without_reading_it(copy):
    with open(copy / MODEL_FILE, "r+b") as f:
        f.truncate(MODEL_LIMIT + 1)  # sparse: nothing is written, so nothing could be read quickly either
    with pytest.raises(ModelError, match=f"{MODEL_FILE}: {MODEL_LIMIT + 1} bytes, over the 64 MiB limit"):
        ModelBundle(copy)


LOAD_IN_CHILD = """
import os, sys
from sensor import model
from sensor.model import ModelBundle, ModelError
if len(sys.argv) > 2:  # pretend the stat() saw a regular file: a FIFO swapped in just after it
    real, fake = os.stat, os.stat(sys.argv[2])
    model.os.stat = lambda p, *a, **k: fake if str(p).endswith(sys.argv[3]) else real(p, *a, **k)
try:
    ModelBundle(sys.argv[1])
except ModelError as exc:
    print("ModelError:", exc)
"""


def load_in_child(bundle, *swap) -> str:
    """What ModelBundle(bundle) says, in a child limited in time and memory: a loader that reads
    a device or waits on a FIFO fails this test instead of taking the machine or hanging it."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    out = subprocess.run(
        [sys.executable, "-c", LOAD_IN_CHILD, str(bundle), *map(str, swap)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.mark.parametrize("name", [METADATA_FILE, MODEL_FILE])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_devices_and_fifos_are_refused_without_reading(copy, name, special):
    (copy / name).unlink()
    if special == "fifo":
        os.mkfifo(copy / name)
    else:
        (copy / name).symlink_to(special)
    assert load_in_child(copy) == f"ModelError: {copy / name}: not a regular file; a bundle holds plain files"


@pytest.mark.parametrize("name", [METADATA_FILE, MODEL_FILE])
def test_a_fifo_swapped_in_after_the_stat_does_not_hang(copy, tmp_path, name):
    (copy / name).unlink()
    os.mkfifo(copy / name)
    assert load_in_child(copy, DEFAULT_BUNDLE / name, name) == (
        f"ModelError: {copy / name}: not a regular file; a bundle holds plain files"
    )


@pytest.mark.parametrize(
    "name, message",
    [
        ("int8_input", "model input is int8, expected float32"),
        ("two_inputs", "model has 2 inputs and 1 outputs"),
        ("two_outputs", "model has 1 inputs and 2 outputs"),
        (
            "batch_collapsed",
            r"model output is \[1, 1\] for a batch of 256 windows; expected \[batch, 1\] or \[batch\]",
        ),
        ("nan_output", r"smoke inference scored nan on a silent window and nan on a busy one"),
        ("busy_seven", r"smoke inference scored 0.5 on a silent window and 7 on a busy one"),
        # Without the check LiteRT writes each batch past the activations it sized for one window.
        ("variable_activations", r"10 tensor\(s\) of the model are marked variable \(stateful\)"),
    ],
)
def test_incompatible_models_are_refused_at_load(copy, name, message):
    with pytest.raises(ModelError, match=f"{MODEL_FILE}: {message}"):
        ModelBundle(with_model(copy, name))


def test_a_model_with_a_flat_output_scores_like_its_weights(copy):
    b = ModelBundle(with_model(copy, "flat_output"))
    x = np.concatenate([w.x for o in run_files([ATTACKS / "amp.TCP.reflection.SYNACK.pcap"]) for w in o.windows])
    kernel = ((np.arange(x[0].size) % 7) - 3) * 0.01  # tests/data/models/README.md
    want = 1 / (1 + np.exp(-(b.normalization.apply(x).reshape(len(x), -1).astype(np.float64) @ kernel + 0.25)))
    got = b.score(x)
    assert len(x) % 256 > 32 and got.shape == (len(x),)  # full batches, then several small ones
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 255, 256, 257, 300, 600])
def test_a_window_scores_the_same_however_many_are_scored_with_it(n):
    """Calls are cut into full batches and then small ones; every head's score of a window is
    the one it gets alone, bit for bit (EVE must not depend on how busy a second was)."""
    b = ModelBundle()
    x = np.concatenate([w.x for o in run_files([ATTACKS / "amp.TCP.reflection.SYNACK.pcap"]) for w in o.windows])
    x = np.concatenate([x] * (-(-n // len(x))))[:n]
    alone = np.concatenate([b.score_all(x[i : i + 1]) for i in range(n)])
    assert np.array_equal(b.score_all(x), alone)


def test_a_model_that_crashes_litert_is_refused_and_the_process_lives(copy, monkeypatch):
    # The fuzz campaign found byte-damaged models on which LiteRT's allocate_tensors segfaults;
    # here the crash is made certain: the load kills its own process as such a fault would.
    monkeypatch.setattr(model, "_vetted", set())
    monkeypatch.setattr(model.Head, "_load", lambda self, path, content: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(ModelError, match=f"{MODEL_FILE}: LiteRT crashed loading it \\(SIGSEGV\\)"):
        ModelBundle(copy)
    monkeypatch.undo()
    assert ModelBundle(DEFAULT_BUNDLE).score(np.zeros((1, 3, SCHEMA.size), np.float32)).shape == (1,)


def test_a_model_that_scores_nan_far_from_the_training_data_is_refused(copy):
    with pytest.raises(ModelError, match="smoke inference scored nan on a window far from the training data"):
        ModelBundle(with_model(copy, "nan_far_out"))


def test_an_invalid_score_at_run_time_is_counted_and_does_not_alert(copy, monkeypatch, caplog):
    b = ModelBundle(copy)
    real = b.heads[0].run

    def some_nan(buf):
        out = real(buf).copy()
        out[1] = np.nan
        out[2] = 7.0
        return out

    monkeypatch.setattr(b.heads[0], "run", some_nan)
    s = b.score(np.zeros((4, 3, SCHEMA.size), np.float32))
    assert s[1] == s[2] == 0.0 and np.isfinite(s).all()
    b.score(np.zeros((4, 3, SCHEMA.size), np.float32))
    assert b.invalid_scores == 4
    assert sum("invalid scores are counted" in r.message for r in caplog.records) == 1


def test_a_model_that_hangs_litert_is_refused_at_the_timeout(copy, monkeypatch):
    monkeypatch.setattr(model, "_vetted", set())
    monkeypatch.setattr(model, "VET_TIMEOUT_S", 0.5)
    monkeypatch.setattr(model.Head, "_load", lambda self, path, content: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(
        ModelError, match=f"{MODEL_FILE}: LiteRT did not finish loading and test-scoring it within 0.5 s"
    ):
        ModelBundle(copy)
    assert time.monotonic() - started < 10


def test_a_bundle_is_checked_in_a_child_once_per_model(copy, monkeypatch):
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(model, "_vetted", set())
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    first = ModelBundle(copy)
    ModelBundle(copy)
    models = len(first.heads) + sum(h.gate is not None for h in first.heads)
    assert len(forks) == models == 3  # one per model file (two heads, a gate), the first time only


def test_an_unforeseen_error_inside_litert_is_a_model_error(copy, monkeypatch):
    from ai_edge_litert import interpreter

    def broken(*args, **kwargs):
        raise KeyError("tensor 7")

    monkeypatch.setattr(interpreter, "Interpreter", broken)
    with pytest.raises(ModelError, match=f"{MODEL_FILE}: loading the model in LiteRT failed: KeyError: 'tensor 7'"):
        ModelBundle(copy)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(
        [
            "format",
            "format_version",
            "schema",
            "normalization",
            "threshold",
            "sha256",
            "name",
            "schema.version",
            "schema.names",
            "schema.window",
            "normalization.mean",
            "normalization.scale",
            "gate",
            "gate.file",
            "gate.sha256",
        ]
    ),
    value=JSON,
)
def test_any_json_in_any_field_loads_or_is_a_model_error(copy, key, value):
    meta = json.loads((DEFAULT_BUNDLE / METADATA_FILE).read_text())
    top, _, sub = key.partition(".")
    if sub:
        meta[top][sub] = value
    else:
        meta[top] = value
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    try:
        ModelBundle(copy)
    except ModelError as exc:
        # the metadata, or a file it names (a gate that is not there)
        assert str(exc).startswith(f"{copy}/") and "\n" not in str(exc)


def test_a_window_scores_the_same_whatever_the_batch_it_is_scored_in(flood_windows):
    """Seconds with few windows go through the small-batch interpreter: bit-identical scores."""
    b = ModelBundle(DEFAULT_BUNDLE)
    x = np.concatenate([w.x for w in flood_windows])[:3000]
    whole = b.score_all(x)
    for step in (1, 5, 32, 33, 1500):
        parts = np.concatenate([b.score_all(x[i : i + step]) for i in range(0, len(x), step)])
        assert np.array_equal(parts, whole), step


def with_gate(d, name: str = "flat_output"):
    """Bundle ``d`` whose primary head has the fixture model ``name`` as its gate."""
    shutil.copyfile(MODELS / f"{name}.tflite", d / "supervised-gate.tflite")
    edit_meta(d, gate={"file": "supervised-gate.tflite", "sha256": file_sha256(d / "supervised-gate.tflite")})
    return d


def test_a_gate_decides_the_windows_far_from_every_cutoff_and_the_head_scores_the_rest(copy):
    """Below every cutoff, the gated column is the gate's score; wherever any head may reach its
    cutoff, every column is the exact one (what alerts and their metadata show)."""
    b = ModelBundle(with_gate(copy))
    assert b.heads[0].gate is not None and b.heads[1].gate is None
    pcaps = [MAWI_PCAP, ATTACKS / "amp.TCP.reflection.SYNACK.pcap"]
    x = np.concatenate([w.x for p in pcaps for o in run_files([p]) for w in o.windows])
    exact = b.score_all(x)
    gate = b.score_all(x, cutoffs=np.full(2, np.inf))
    assert np.array_equal(gate[:, 1], exact[:, 1]) and not np.array_equal(gate[:, 0], exact[:, 0])
    # cutoffs that split the gate's scores, so that some windows are decided and some are not
    cutoffs = np.array([np.quantile(gate[:, 0], 0.7), 2.0])
    got = b.score_all(x, cutoffs=cutoffs)
    near = gate[:, 0] >= cutoffs[0] - model.GATE_SLACK
    assert 0 < near.sum() < len(x)
    assert np.array_equal(got[near], exact[near])
    assert np.array_equal(got[~near, 0], gate[~near, 0]) and np.array_equal(got[:, 1], exact[:, 1])
    # a window the other head fires on is exact in every column, whatever its gate says
    other = np.array([2.0, np.quantile(exact[:, 1], 0.5)])
    got = b.score_all(x, cutoffs=other)
    fired = exact[:, 1] >= other[1]
    assert np.array_equal(got[fired], exact[fired])


def test_a_tampered_gate_is_refused(copy):
    d = with_gate(copy)
    (d / "supervised-gate.tflite").write_bytes((d / "supervised-gate.tflite").read_bytes()[:-1] + b"x")
    with pytest.raises(ModelError, match="supervised-gate.tflite: sha256 .* does not match"):
        ModelBundle(d)


def test_a_missing_gate_is_refused(copy):
    d = with_gate(copy)
    (d / "supervised-gate.tflite").unlink()
    with pytest.raises(ModelError, match="supervised-gate.tflite: cannot read: No such file"):
        ModelBundle(d)
