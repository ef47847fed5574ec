"""Model stage: a model bundle (``model.tflite`` + ``metadata.json``) scoring windows.

The bundle is what the trainer exports and the sensor loads, at start and on
every SIGHUP reload.  Loading checks, in order:

1. ``metadata.json`` is a regular file of at most ``METADATA_LIMIT`` bytes and
   parses as a JSON object;
2. every field the sensor uses has the right JSON type and range: the bundle
   format, the feature schema (exactly the one this sensor computes), the
   normalization (finite, one mean and scale per feature, scales at least
   ``MIN_SCALE``), the threshold (finite, strictly between 0 and 1), the
   sha256 and the name;
3. ``model.tflite`` is a regular file of at most ``MODEL_LIMIT`` bytes whose
   sha256 is the one recorded;
4. LiteRT accepts it, with one float32 input of shape (batch, 3, F) and one
   float32 output of shape (batch, 1) or (batch,), and no tensor of it is a
   variable (state kept between invocations);
5. a smoke inference on fixed windows (silence, and a busy window built from
   the normalization) gives finite scores in [0, 1].

Steps 4 and 5 run first in a forked child: a damaged flatbuffer can make
LiteRT's ``allocate_tensors`` dereference a bad pointer (the fuzz campaign found
such models), and a segfault there must refuse the bundle, not kill the sensor.
The child costs a fork and a load; its verdict is remembered per model and
normalization for the life of the process.

Any failure — including an exception nobody foresaw — is a ``ModelError``
naming the file and the check, so a bad new bundle never replaces a good one
and never crashes the sensor at its first window.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import logging
import math
import os
import re
import select
import shutil
import signal
import stat
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FlowlstmError
from .features import SCHEMA
from .windows import WINDOW_SECONDS

BUNDLE_FORMAT = "flowlstm-model"
BUNDLE_FORMAT_VERSION = 1
MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
DEFAULT_BUNDLE = Path(__file__).parent / "models" / "default"
METADATA_LIMIT = 4 << 20  # the shipped metadata is 7 KB
MODEL_LIMIT = 64 << 20  # the shipped model is 50 KB; LiteRT holds the whole file in memory
# The trainer replaces a feature's scale at or below 1e-6 by 1.0 (trainer/dataset.py), so a
# smaller one was not fitted by it; dividing by it would turn float32 rounding noise into
# large inputs and make scores arbitrary.
MIN_SCALE = 1e-6
_NAME_MAX = 200
PRIMARY_HEAD = "supervised"  # the name of model.tflite's head unless the metadata's 'head' says otherwise
MAX_HEADS = 4
_HEAD_FILE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.tflite")
_HEAD_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# Fixed input shapes avoid re-allocating tensors per call.  Measured on this project's 2-core
# box (bench/throughput.py prints it), both shipped heads score the most windows per second
# at batch 128-512 (supervised 744k/s at 256 against 715k/s at 1024; 705k/s at 32), so big
# batches buy nothing; what costs is padding: a second of 1,100 windows scored in 1024-window
# batches invokes on 2,048.  A call is scored in full batches of _SCORE_BATCH and then in
# batches of _SMALL_BATCH, so fewer than _SMALL_BATCH padding windows are scored per call
# (a quiet link or a slow scan has one or two windows a second).
_SCORE_BATCH = 256
_SMALL_BATCH = 32
_BLOCK = 8 * _SCORE_BATCH  # windows normalized at once (2 MB), then scored batch by batch
GATE_SLACK = 1e-4  # score units; see ModelBundle.score_all
VET_TIMEOUT_S = 30.0  # the shipped model loads and scores in ~50 ms
log = logging.getLogger("flowlstm.model")
_vetted: set[str] = set()  # digests of (model, normalization) a child loaded and scored cleanly


class ModelError(FlowlstmError):
    """A model bundle cannot be used."""

    exit_code = 78  # EX_CONFIG: the bundle is part of the sensor's configuration


def install_bundle(tmp: Path, out_dir: Path) -> None:
    """Move a bundle written and checked in ``tmp`` (a directory beside ``out_dir``) to
    ``out_dir``, readable by a sensor running as its own user, replacing what was there."""
    umask = os.umask(0)
    os.umask(umask)
    # mkdtemp made it private
    os.chmod(tmp, 0o777 & ~umask)
    for member in tmp.iterdir():
        os.chmod(member, 0o666 & ~umask)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    """An exception as one short line (LiteRT's messages span several)."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:300]}"


@contextmanager
def _check(where: object, what: str) -> Iterator[None]:
    """Turn any exception but ``ModelError`` raised inside into one naming ``where`` and ``what``."""
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a hostile bundle must never take the sensor down
        raise ModelError(f"{where}: {what} failed: {_one_line(exc)}") from None


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes.

    Checked with ``stat`` before opening, so a device is never opened (``/dev/zero`` would be
    read forever) and a FIFO is never waited on; opened ``O_NONBLOCK`` and checked again, so a
    FIFO swapped in between cannot hang the open; read at most ``limit + 1`` bytes, so a file
    growing meanwhile is refused rather than read whole.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{path}: not a regular file; a bundle holds plain files")
    if st.st_size > limit:
        raise ModelError(f"{path}: {st.st_size} bytes, over the {limit >> 20} MiB limit for this file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelError(f"{path}: not a regular file; a bundle holds plain files")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelError(f"{path}: over the {limit >> 20} MiB limit for this file")
    return data


@dataclass(frozen=True)
class Normalization:
    """Per-feature affine map fitted on training data: (x - mean) / scale.  Features in
    ``ignored`` (schema indices) enter the model as 0: it was trained without them."""

    mean: np.ndarray
    scale: np.ndarray
    ignored: tuple[int, ...] = ()

    def apply(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalized float32 copy of windows ``x`` (N, 3, F), written into ``out`` if given."""
        if out is None:
            out = np.empty(x.shape, np.result_type(x, self.mean))
        # In place: the arithmetic of (x - mean) / scale with a third of the memory traffic.
        np.subtract(x, self.mean, out=out)
        out /= self.scale
        # Absent seconds stay exactly zero, so the model sees "silent", not "average".
        out[~(x[..., 0] > 0)] = 0
        if self.ignored:
            out[..., list(self.ignored)] = 0
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, list[float] | list[str]]:
        d: dict[str, list[float] | list[str]] = {
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
        }
        if self.ignored:  # absent from bundles trained on every feature, which stay as they were
            d["ignored"] = [SCHEMA.names[i] for i in self.ignored]
        return d


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true is not a version number


def _number(v: object) -> float | None:
    """A JSON number as a float (huge integers become infinite); None for anything else."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _show(v: object) -> str:
    """A metadata value for a message: short, and safe to format for any JSON value."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)[:60]
    return f"a JSON {'object' if isinstance(v, dict) else 'array'}"


def _finite_vector(v: object, where: str, key: str) -> np.ndarray:
    """``v`` as float32 (SCHEMA.size,): a JSON list of one finite number per feature."""
    values = [_number(e) for e in v] if isinstance(v, list) else []
    if len(values) != SCHEMA.size or None in values:
        found = f"{len(v)} entries" if isinstance(v, list) else _show(v)
        raise ModelError(
            f"{where}: normalization.{key} must be a list of {SCHEMA.size} numbers, one per feature "
            f"(found {found}); re-export the bundle"
        )
    with np.errstate(over="ignore"):  # beyond float32's range is infinite, refused just below
        out = np.array(values, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        raise ModelError(f"{where}: normalization.{key}[{bad[0]}] is {values[bad[0]]!r}, not a finite float32")
    return out


@dataclass(frozen=True)
class GateSpec:
    """A head's gate: a cheaper model whose score is never below the head's (``gate`` in the
    metadata: ``file`` and ``sha256``)."""

    file: str
    sha256: str


@dataclass(frozen=True)
class HeadSpec:
    """One scoring model of a bundle: its file, the sha256 recorded for it, its threshold, and
    its gate if it has one."""

    name: str
    file: str
    sha256: str
    threshold: float
    gate: GateSpec | None = None


@dataclass(frozen=True)
class Metadata:
    """The fields of ``metadata.json`` the sensor uses, checked."""

    normalization: Normalization
    heads: tuple[HeadSpec, ...]  # the primary (model.tflite) first
    name: str | None

    @property
    def threshold(self) -> float:
        return self.heads[0].threshold

    @property
    def sha256(self) -> str:
        return self.heads[0].sha256


def validate_metadata(meta: object, where: str) -> Metadata:
    """Check a bundle's metadata against this sensor: each field it uses, type and range."""
    if not isinstance(meta, dict):
        raise ModelError(f"{where}: metadata must be a JSON object")
    fmt, version = meta.get("format"), meta.get("format_version")
    if fmt != BUNDLE_FORMAT or not _is_int(version) or version != BUNDLE_FORMAT_VERSION:
        raise ModelError(
            f"{where}: not a flowlstm model bundle of format version {BUNDLE_FORMAT_VERSION} "
            f"(found format={_show(fmt)} version={_show(version)})"
        )
    schema = meta.get("schema")
    if not isinstance(schema, dict):
        raise ModelError(f"{where}: 'schema' must be a JSON object, found {_show(schema)}; re-export the bundle")
    schema_version, names = schema.get("version"), schema.get("names")
    if not _is_int(schema_version) or schema_version != SCHEMA.version:
        raise ModelError(
            f"{where}: trained on feature schema version {_show(schema_version)}, this sensor "
            f"computes version {SCHEMA.version}; retrain with 'flowlstm-train' from this release"
        )
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError(f"{where}: schema.names must be a list of feature names, found {_show(names)}")
    if names != list(SCHEMA.names):
        raise ModelError(
            f"{where}: schema.names differ from feature schema version {SCHEMA.version}'s "
            f"{SCHEMA.size} names; the bundle was not exported by this release's trainer"
        )
    window = schema.get("window")
    if not _is_int(window) or window != WINDOW_SECONDS:
        raise ModelError(f"{where}: model window is {_show(window)} seconds, the sensor uses {WINDOW_SECONDS}")
    norm = meta.get("normalization")
    if not isinstance(norm, dict):
        raise ModelError(f"{where}: 'normalization' must be a JSON object with 'mean' and 'scale' lists")
    mean = _finite_vector(norm.get("mean"), where, "mean")
    scale = _finite_vector(norm.get("scale"), where, "scale")
    tiny = np.flatnonzero(~(scale >= np.float32(MIN_SCALE)))
    if len(tiny):
        raise ModelError(
            f"{where}: normalization.scale[{tiny[0]}] ({SCHEMA.names[tiny[0]]}) is {scale[tiny[0]]:.3g}; "
            f"scales must be at least {MIN_SCALE:g}"
        )
    ignored = _ignored(norm.get("ignored", []), where)
    heads = [_head_spec(meta, where, "", PRIMARY_HEAD, MODEL_FILE)]
    extra = meta.get("heads", [])
    if not isinstance(extra, list) or len(extra) > MAX_HEADS - 1:
        raise ModelError(f"{where}: 'heads' must be a list of at most {MAX_HEADS - 1} more heads, found {_show(extra)}")
    for i, h in enumerate(extra):
        if not isinstance(h, dict):
            raise ModelError(f"{where}: heads[{i}] must be a JSON object, found {_show(h)}")
        file = h.get("file")
        if not isinstance(file, str) or not _HEAD_FILE.fullmatch(file) or file == MODEL_FILE:
            raise ModelError(
                f"{where}: heads[{i}].file must name a .tflite file in the bundle "
                f"(not {MODEL_FILE}), found {_show(file)}"
            )
        heads.append(_head_spec(h, where, f"heads[{i}].", None, file))
    names = [h.name for h in heads]
    files = [h.file for h in heads] + [h.gate.file for h in heads if h.gate]
    if len(set(names)) != len(names) or len(set(files)) != len(files):
        raise ModelError(f"{where}: two heads share a name or a file ({', '.join(names)})")
    name = meta.get("name")
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= _NAME_MAX and name.isprintable()):
        raise ModelError(f"{where}: 'name' must be printable text of 1 to {_NAME_MAX} characters, found {_show(name)}")
    return Metadata(Normalization(mean, scale, ignored), tuple(heads), name)


def _ignored(v: object, where: str) -> tuple[int, ...]:
    """``normalization.ignored``: distinct feature names of the schema, 'present' excepted."""
    names = list(SCHEMA.names)
    if not isinstance(v, list) or not all(isinstance(n, str) and n in names[1:] for n in v) or len(set(v)) != len(v):
        raise ModelError(
            f"{where}: normalization.ignored must be a list of distinct feature names of schema version "
            f"{SCHEMA.version} ('present' excepted), found {_show(v)}"
        )
    return tuple(sorted(names.index(n) for n in v))


def _head_spec(d: dict[str, Any], where: str, prefix: str, default_name: str | None, file: str) -> HeadSpec:
    threshold = _number(d.get("threshold"))
    if threshold is None or not 0.0 < threshold < 1.0:  # also refuses NaN
        raise ModelError(f"{where}: {prefix}threshold {_show(d.get('threshold'))} is not a number between 0 and 1")
    sha = d.get("sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ModelError(f"{where}: '{prefix}sha256' must be the model file's sha256 in hex, found {_show(sha)}")
    name = d.get("head", default_name) if not prefix else d.get("name")
    if not isinstance(name, str) or not _HEAD_NAME.fullmatch(name):
        raise ModelError(
            f"{where}: {prefix}{'name' if prefix else 'head'} must be a short lower-case name, found {_show(name)}"
        )
    return HeadSpec(name, file, sha, threshold, _gate_spec(d.get("gate"), where, prefix))


def _gate_spec(g: object, where: str, prefix: str) -> GateSpec | None:
    if g is None:
        return None
    if not isinstance(g, dict):
        raise ModelError(f"{where}: {prefix}gate must be a JSON object with 'file' and 'sha256', found {_show(g)}")
    file, sha = g.get("file"), g.get("sha256")
    if not isinstance(file, str) or not _HEAD_FILE.fullmatch(file) or file == MODEL_FILE:
        raise ModelError(
            f"{where}: {prefix}gate.file must name a .tflite file in the bundle (not {MODEL_FILE}), found {_show(file)}"
        )
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ModelError(f"{where}: {prefix}gate.sha256 must be the gate file's sha256 in hex, found {_show(sha)}")
    return GateSpec(file, sha)


def _vet(model_path: Path, content: bytes, norm: Normalization, load: Callable[[Path, bytes], None]) -> None:
    """Run ``load(model_path, content)`` in a forked child first; ``ModelError`` if it fails or dies.

    The child reports a ``ModelError`` through a pipe and exits; any other end — a signal, a
    hang past ``VET_TIMEOUT_S`` — is itself the verdict.  The parent never runs LiteRT on a
    model no child survived.
    """
    digest = hashlib.sha256(content + norm.mean.tobytes() + norm.scale.tobytes() + bytes(norm.ignored)).hexdigest()
    if digest in _vetted:
        return
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, score, report, and leave without running any parent cleanup
        code = 0
        try:
            os.close(read_fd)
            # LiteRT's notices were written once by the parent already, and a crash here is a
            # verdict, not something to dump a traceback for
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            faulthandler.disable()
            try:
                load(model_path, content)
            except ModelError as exc:
                os.write(write_fd, str(exc).encode("utf-8", "replace")[:4000])
                code = 1
        except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the parent's code
            code = 2
        os._exit(code)
    os.close(write_fd)
    try:
        message, status = _wait_child(pid, read_fd)
    finally:
        os.close(read_fd)
    if status is None:
        raise ModelError(f"{model_path}: LiteRT did not finish loading and test-scoring it within {VET_TIMEOUT_S:g} s")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        raise ModelError(
            f"{model_path}: LiteRT crashed loading it ({signal.Signals(sig).name}); the file is damaged or hostile"
        )
    code = os.WEXITSTATUS(status)
    if code == 1:
        raise ModelError(message or f"{model_path}: refused")
    if code != 0:
        raise ModelError(f"{model_path}: checking it failed (exit status {code} of the checking process)")
    _vetted.add(digest)


def _wait_child(pid: int, fd: int) -> tuple[str, int | None]:
    """The child's report and wait status; (report, None) after killing it at the timeout."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + VET_TIMEOUT_S
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return b"".join(chunks).decode("utf-8", "replace"), None
        chunk = os.read(fd, 4096)
        if not chunk:  # the child closed its end: it has exited, or is about to
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace"), status


# Where a TFLite flatbuffer keeps what ``_variable_tensors`` reads (tensorflow/lite/schema/
# schema.fbs): field 2 of Model is its subgraphs, field 0 of SubGraph its tensors, field 5 of
# Tensor is_variable.  A field's slot in a table's vtable is 4 + 2 * its number.
_MODEL_SUBGRAPHS, _SUBGRAPH_TENSORS, _TENSOR_IS_VARIABLE = 4 + 2 * 2, 4 + 2 * 0, 4 + 2 * 5


def _variable_tensors(content: bytes) -> int:
    """How many tensors of a (LiteRT-verified) TFLite model are marked variable.

    LiteRT allocates a variable tensor once, for the shape it had at the first allocation, and
    does not grow it when the input is resized to a batch: a model whose activations are
    marked variable has every batch written past their end.  The fuzz campaign found one (a
    single flipped byte in a shared vtable, input 11,151,103 of seed 9) that passed the
    checking child and then corrupted the sensor's heap.  The trainer's exports are stateless
    (the LSTMs are unrolled), so any variable tensor is damage.  The schema's generated
    readers ship with TensorFlow, not with the sensor; three fields read with the flatbuffers
    runtime LiteRT itself depends on are all this check needs.
    """
    from flatbuffers import encode, number_types
    from flatbuffers.table import Table

    buf = bytearray(content)
    model = Table(buf, encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0))
    count = 0
    graphs = model.Offset(_MODEL_SUBGRAPHS)
    for i in range(model.VectorLen(graphs) if graphs else 0):
        graph = Table(buf, model.Indirect(model.Vector(graphs) + 4 * i))
        tensors = graph.Offset(_SUBGRAPH_TENSORS)
        for j in range(graph.VectorLen(tensors) if tensors else 0):
            tensor = Table(buf, graph.Indirect(graph.Vector(tensors) + 4 * j))
            flag = tensor.Offset(_TENSOR_IS_VARIABLE)
            count += bool(flag and tensor.Get(number_types.BoolFlags, tensor.Pos + flag))
    return count


def _refuse_variable_tensors(path: Path, content: bytes) -> None:
    """``ModelError`` if the model has variable tensors (see ``_variable_tensors``)."""
    try:
        variable = _variable_tensors(content)
    except (IndexError, struct.error) as exc:  # LiteRT verified it; this would be a reader bug
        raise ModelError(f"{path}: cannot read its tensor table: {_one_line(exc)}") from None
    if variable:
        raise ModelError(
            f"{path}: {variable} tensor(s) of the model are marked variable (stateful); the sensor "
            "scores stateless models only (export the unrolled twin), and LiteRT does not resize "
            "variable tensors to a batch — the file is damaged or not a flowlstm export"
        )


def _probe_windows(norm: Normalization) -> np.ndarray:
    """The windows every bundle is test-scored on at load: silence (all zeros); a busy window,
    every second present and each feature from two scales below to two above its mean; and
    windows far out (each feature 10, 100 and 1000 scales off its mean, either way), where a
    damaged weight turns a model's output into inf or NaN."""
    k = (np.arange(WINDOW_SECONDS * SCHEMA.size) % 5 - 2).reshape(WINDOW_SECONDS, SCHEMA.size)
    far = [sign * m * np.sign(k + 0.5) for m in (10, 100, 1000) for sign in (1, -1)]
    x = np.zeros((2 + len(far), WINDOW_SECONDS, SCHEMA.size), np.float32)
    for i, offsets in enumerate([k, *far], start=1):
        x[i] = norm.mean + norm.scale * offsets
    x[1:, :, 0] = 1.0  # "present": Normalization.apply zeroes seconds whose first feature is not positive
    return x


class Head:
    """One scoring model of a bundle, loaded in LiteRT (one thread) and smoke-tested."""

    def __init__(self, spec: HeadSpec, path: Path, content: bytes, norm: Normalization):
        self.spec = spec
        self.path = path
        self.gate: Head | None = None  # set by the bundle when the metadata names one
        self.sha256 = hashlib.sha256(content).hexdigest()
        if self.sha256 != spec.sha256:
            raise ModelError(
                f"{path}: sha256 {self.sha256[:16]}… does not match the metadata's "
                f"{spec.sha256[:16]}…; the bundle is damaged or mixed up — re-copy it"
            )
        _vet(path, content, norm, lambda p, c: self._load_and_smoke(p, c, norm))
        self._load_and_smoke(path, content, norm)

    @property
    def name(self) -> str:
        return self.spec.name

    def _load_and_smoke(self, path: Path, content: bytes, norm: Normalization) -> None:
        with _check(path, "loading the model in LiteRT"):
            self._interp = self._load(path, content)
            _refuse_variable_tensors(path, content)  # read once LiteRT has verified the flatbuffer
            self._small = self._load(path, content, _SMALL_BATCH)
        with _check(path, "the smoke inference"):
            self._smoke(path, norm)

    def _smoke(self, path: Path, norm: Normalization) -> None:
        """Score the probe windows once: the output must follow the batch, and be finite in [0, 1]."""
        probe = _probe_windows(norm)
        runs = []
        for batch in (_SCORE_BATCH, _SMALL_BATCH):
            buf = np.zeros((batch, WINDOW_SECONDS, SCHEMA.size), dtype=np.float32)
            norm.apply(probe, out=buf[: len(probe)])
            # Output shapes are known only once the model has run on the resized input.
            raw = self.run(buf)
            if list(raw.shape) not in ([batch, 1], [batch]):
                raise ModelError(
                    f"{path}: model output is {list(raw.shape)} for a batch of {batch} windows; "
                    "expected [batch, 1] or [batch], one score per window"
                )
            runs.append(raw.reshape(-1)[: len(probe)])
        got = runs[0]
        if not np.array_equal(got, runs[1], equal_nan=True):
            raise ModelError(
                f"{path}: the same windows score differently in a batch of {_SMALL_BATCH} and of {_SCORE_BATCH}; "
                "a window's score must not depend on the others in its batch"
            )
        silent, busy = got[:2]
        if not all(np.isfinite(v) and 0 <= v <= 1 for v in (silent, busy)):
            raise ModelError(
                f"{path}: smoke inference scored {silent:.4g} on a silent window and {busy:.4g} on a busy one; "
                "scores must be finite and within [0, 1] (a sigmoid output), or nothing would alert right"
            )
        bad = ~(np.isfinite(got) & (got >= 0) & (got <= 1))
        if bad.any():
            raise ModelError(
                f"{path}: smoke inference scored {got[bad][0]:.4g} on a window far from the training data; "
                "scores must be finite and within [0, 1] for every input (a damaged weight?)"
            )

    def _load(self, path: Path, content: bytes, batch: int = _SCORE_BATCH) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        try:
            interp = Interpreter(model_content=content, num_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: LiteRT cannot load it: {_one_line(exc)}") from None
        inputs, outputs = interp.get_input_details(), interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{path}: model has {len(inputs)} inputs and {len(outputs)} outputs; "
                "the sensor feeds it one batch of windows and reads one score per window"
            )
        inp = inputs[0]
        if len(inp["shape"]) != 3 or list(inp["shape"][1:]) != [WINDOW_SECONDS, SCHEMA.size]:
            raise ModelError(
                f"{path}: model input is {inp['shape'].tolist()}, expected [batch, {WINDOW_SECONDS}, {SCHEMA.size}]"
            )
        if inp["dtype"] != np.float32:
            raise ModelError(
                f"{path}: model input is {np.dtype(inp['dtype']).name}, expected float32 "
                "(export with dynamic-range quantization, which keeps a float interface)"
            )
        try:
            interp.resize_tensor_input(inp["index"], [batch, WINDOW_SECONDS, SCHEMA.size])
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: LiteRT cannot load it: {_one_line(exc)}") from None
        out = outputs[0]
        if out["dtype"] != np.float32:
            raise ModelError(f"{path}: model output is {np.dtype(out['dtype']).name}, expected float32 scores")
        self._in = inp["index"]
        self._out = out["index"]
        return interp

    def run(self, buf: np.ndarray) -> np.ndarray:
        """The model's output tensor for one full, normalized input batch (of either size)."""
        interp = self._small if len(buf) == _SMALL_BATCH else self._interp
        interp.set_tensor(self._in, buf)
        interp.invoke()
        out: np.ndarray = interp.get_tensor(self._out)
        return out


def _padded(n: int) -> int:
    """Windows scored for ``n``: full batches, then small ones (for n ≥ 1, at least one small)."""
    full, rest = divmod(n, _SCORE_BATCH)
    return full * _SCORE_BATCH + -(-rest // _SMALL_BATCH) * _SMALL_BATCH


class ModelBundle:
    """A loaded, verified bundle: its normalization and heads, scoring windows with LiteRT.

    The primary head is ``model.tflite`` (the supervised LSTM a bundle always has); more
    heads (the normal-behaviour model) are listed in the metadata's ``heads``.  A window is
    anomalous when any head scores it at or above that head's threshold.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_BUNDLE):
        self.invalid_scores = 0  # windows a head scored outside [0, 1] (NaN included)
        with _check(path, "opening the bundle"):
            self.path = Path(path)
        meta_path = self.path / METADATA_FILE
        with _check(meta_path, "reading the metadata"):
            try:
                raw = read_regular_file(meta_path, METADATA_LIMIT)
            except FileNotFoundError:
                raise ModelError(
                    f"{meta_path}: missing; a bundle is a directory with {MODEL_FILE} and {METADATA_FILE}"
                ) from None
            except OSError as exc:
                raise ModelError(f"{meta_path}: cannot read: {exc.strerror}") from None
            try:
                self.metadata = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON; nesting too deep
                raise ModelError(f"{meta_path}: unreadable metadata: {_one_line(exc)}") from None
        with _check(meta_path, "checking the metadata"):
            checked = validate_metadata(self.metadata, str(meta_path))
        self.normalization = checked.normalization
        self.name = checked.name or self.path.name
        self.heads: list[Head] = []
        for spec in checked.heads:
            head = self._load_head(spec)
            if spec.gate is not None:
                gate_spec = HeadSpec(f"{spec.name}-gate", spec.gate.file, spec.gate.sha256, spec.threshold)
                head.gate = self._load_head(gate_spec)
            self.heads.append(head)
        self.thresholds = np.array([h.spec.threshold for h in self.heads], dtype=np.float64)
        self.head_names = tuple(h.name for h in self.heads)

    def _load_head(self, spec: HeadSpec) -> Head:
        path = self.path / spec.file
        with _check(path, "reading the model"):
            try:
                # Loaded from memory, not mapped from the file: an operator copying a new model over
                # this path must not pull pages from under the running interpreter (SIGBUS), and the
                # bytes checked are the bytes scored with.
                content = read_regular_file(path, MODEL_LIMIT)
            except OSError as exc:
                raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
        return Head(spec, path, content, self.normalization)

    @property
    def threshold(self) -> float:
        """The primary head's threshold."""
        return float(self.thresholds[0])

    @property
    def sha256(self) -> str:
        """The primary model's sha256 (what names the bundle in alerts)."""
        return self.heads[0].sha256

    def _run_head(self, head: Head, j: int, buf: np.ndarray, scores: np.ndarray) -> None:
        """``head``'s scores of the normalized, padded windows ``buf`` into column ``j`` of ``scores``."""
        n, i = len(scores), 0
        while i < n:
            size = _SCORE_BATCH if len(buf) - i >= _SCORE_BATCH else _SMALL_BATCH
            got = head.run(buf[i : i + size]).reshape(-1)
            take = min(size, n - i)
            scores[i : i + take, j] = got[:take]
            i += size

    def score(self, x: np.ndarray) -> np.ndarray:
        """The primary head's anomaly scores in [0, 1] for raw windows x of shape (N, 3, F)."""
        return self.score_all(x)[:, 0].copy()

    def score_all(self, x: np.ndarray, pool: Executor | None = None, cutoffs: np.ndarray | None = None) -> np.ndarray:
        """Every head's scores in [0, 1], (N, heads), for raw windows x of shape (N, 3, F).

        With ``pool``, the heads after the first score on its threads while this one scores the
        first (LiteRT's invoke releases the GIL; each head has interpreters of its own).

        With ``cutoffs`` (one per head), a head with a gate scores every window with its gate
        first, and only the windows where some head's score may reach its cutoff with the head
        itself.  Where a window is decided (scored by a gate and no head near its cutoff), the
        gated head's column holds the gate's score, which is at least the head's: the windows
        that reach a cutoff, and every score an alert reports, are the same as without cutoffs.
        A gate is one member of an ensemble whose every member must call a window an attack,
        so almost every window is decided by it at a third of the ensemble's cost.
        """
        out = self._scores(x, self.heads if cutoffs is None else [h.gate or h for h in self.heads], pool)
        gated = [j for j, h in enumerate(self.heads) if h.gate is not None]
        if cutoffs is not None and gated:
            # LiteRT's logistic of the gate's logit and of the ensemble's least logit (the same
            # number) may differ in the last bit; the slack keeps such a window exact.
            # A gate's invalid score (NaN) decides nothing either.
            near = np.flatnonzero(~(out < np.asarray(cutoffs) - GATE_SLACK).all(axis=1))
            if len(near):
                out[np.ix_(near, np.array(gated))] = self._scores(x[near], [self.heads[j] for j in gated], pool)
        self._drop_invalid(out)
        return out

    def _scores(self, x: np.ndarray, heads: list[Head], pool: Executor | None) -> np.ndarray:
        """The scores of ``heads`` (N, len(heads)) for raw windows x, normalized block by block."""
        n = len(x)
        out = np.empty((n, len(heads)), dtype=np.float32)
        block = np.zeros((_padded(min(n, _BLOCK)), WINDOW_SECONDS, SCHEMA.size), np.float32)
        for b0 in range(0, n, _BLOCK):
            part = x[b0 : b0 + _BLOCK]
            buf = block[: _padded(len(part))]
            # Normalizing block by block keeps the working set in cache; every head reads the same block.
            self.normalization.apply(part, out=buf[: len(part)])
            buf[len(part) :] = 0
            scores = out[b0 : b0 + len(part)]
            if pool is None or len(heads) == 1:
                for j, head in enumerate(heads):
                    self._run_head(head, j, buf, scores)
            else:
                others = [pool.submit(self._run_head, h, j, buf, scores) for j, h in enumerate(heads) if j]
                self._run_head(heads[0], 0, buf, scores)
                for f in others:
                    f.result()
        return out

    def _drop_invalid(self, out: np.ndarray) -> None:
        """Score 0 (no alert) what a head scored outside [0, 1], counted and logged once."""
        bad = ~(np.isfinite(out) & (out >= 0) & (out <= 1))
        if bad.any():
            # The load-time probe cannot try every input; a score outside [0, 1] is the model's
            # fault, not the window's: it is counted, logged once, and scored 0 (no alert) rather
            # than 1, so a broken model cannot flood the EVE log.
            if not self.invalid_scores:
                log.warning(
                    "%s: the model scored %.4g on a window; invalid scores are counted and do not alert",
                    self.path,
                    float(out[bad][0]),
                )
            self.invalid_scores += int(np.count_nonzero(bad))
            out[bad] = 0.0
