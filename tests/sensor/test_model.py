"""The shipped model bundle: it loads in LiteRT, scores, and bad bundles are refused clearly."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sensor.features import SCHEMA
from sensor.model import DEFAULT_BUNDLE, METADATA_FILE, MODEL_FILE, ModelBundle, ModelError, file_sha256
from sensor.pipeline import run_files

from ..conftest import ATTACKS, MAWI_PCAP


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
    assert (DEFAULT_BUNDLE / MODEL_FILE).stat().st_size < 100_000
    meta = b.metadata
    assert meta["schema"]["version"] == SCHEMA.version and meta["schema"]["names"] == list(SCHEMA.names)
    assert meta["quantization"]["agreement"] >= 0.998
    assert meta["training"]["traces"]  # provenance is recorded


def test_default_bundle_separates_a_flood_from_background():
    b = ModelBundle()
    def scores(path):
        return np.concatenate([b.score(w.x) for o in run_files([path]) for w in o.windows])
    bg = scores(MAWI_PCAP)
    flood = scores(ATTACKS / "pkt.TCP.synflood.spoofed.pcap")
    assert np.mean(bg >= b.threshold) < 0.02
    assert np.mean(flood >= b.threshold) > 0.5


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
    out = subprocess.run([sys.executable, "-c", OVERWRITE, str(copy), str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", (out.returncode, out.stderr[-2000:])
