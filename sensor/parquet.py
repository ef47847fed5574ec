"""Feature windows ⇄ Parquet: the exchange format between sensor and trainer.

One row per window: the flow key and counters of its centre second, and ``x``,
the [t−1, t, t+1] feature rows flattened to 3·F float32.  The feature schema
travels in the file's metadata so a reader can refuse a mismatch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .addresses import format_addresses
from .errors import CaptureError, OutputError
from .features import SCHEMA
from .windows import KEY_DTYPE, KEY_FIELDS, WINDOW_SECONDS, WindowBatch

_ROW_GROUP = 65536
_META_KEY = b"flowlstm.schema"


def _arrow_schema(extra: Sequence[pa.Field] = ()) -> pa.Schema:
    fields = []
    for name in KEY_FIELDS:
        if name in ("src", "dst"):
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, pa.from_numpy_dtype(KEY_DTYPE[name])))
    fields.append(pa.field("x", pa.list_(pa.float32(), WINDOW_SECONDS * SCHEMA.size)))
    fields += list(extra)
    meta = {_META_KEY: json.dumps({**SCHEMA.to_dict(), "window": WINDOW_SECONDS, "flowlstm": __version__}).encode()}
    return pa.schema(fields, metadata=meta)


def window_table(batches: list[WindowBatch], extra: dict[pa.Field, list[np.ndarray]] | None = None) -> pa.Table:
    """Windows → an Arrow table in the exchange schema.

    ``extra`` adds columns: field → one array per batch (the trainer's labels).
    """
    extra = extra or {}
    schema = _arrow_schema(list(extra))
    if batches:
        keys = np.concatenate([b.keys for b in batches])
        x = np.concatenate([b.x for b in batches]).reshape(len(keys), -1)
    else:
        keys = np.zeros(0, KEY_DTYPE)
        x = np.zeros((0, WINDOW_SECONDS * SCHEMA.size), np.float32)
    cols = []
    for name in KEY_FIELDS:
        if name in ("src", "dst"):
            cols.append(pa.array(format_addresses(keys[name]), type=pa.string()))
        else:
            cols.append(pa.array(keys[name]))
    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).ravel())
    cols.append(pa.FixedSizeListArray.from_arrays(flat, WINDOW_SECONDS * SCHEMA.size))
    for fld, parts in extra.items():
        vals = np.concatenate(parts) if parts else np.zeros(0)
        cols.append(pa.array(vals, type=fld.type))
    return pa.Table.from_arrays(cols, schema=schema)


class WindowWriter:
    """Stream windows into a Parquet file, replaced atomically on success."""

    def __init__(self, path: str, extra: Sequence[pa.Field] = ()) -> None:
        self.path = path
        self.rows = 0
        self._tmp = f"{path}.tmp-{os.getpid()}"
        self._extra = list(extra)
        self._buf: list[WindowBatch] = []
        self._extra_buf: dict[pa.Field, list[np.ndarray]] = {f: [] for f in self._extra}
        self._n = 0
        try:
            self._writer = pq.ParquetWriter(self._tmp, _arrow_schema(self._extra), compression="zstd")
        except OSError as exc:
            raise OutputError(f"{path}: cannot create: {exc}") from None

    def write(self, batch: WindowBatch, **extra: np.ndarray) -> None:
        """Queue one batch; ``extra`` gives one array per extra field, by field name."""
        self._buf.append(batch)
        for f in self._extra:
            self._extra_buf[f].append(np.asarray(extra[f.name]))
        self._n += len(batch)
        if self._n >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        try:
            self._writer.write_table(window_table(self._buf, self._extra_buf))
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed: {exc}") from None
        self.rows += self._n
        self._buf, self._n = [], 0
        self._extra_buf = {f: [] for f in self._extra}

    def __enter__(self) -> WindowWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed: {exc}") from None
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


@dataclass(frozen=True)
class WindowFile:
    """Windows read back from Parquet."""

    table: pa.Table  # key columns (addresses as text)
    x: np.ndarray  # (N, 3, F) float32
    schema: dict[str, Any]  # the feature schema from the file's metadata


def read_windows(path: str) -> WindowFile:
    """Read a window file, refusing one written with another feature schema."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CaptureError(f"{path}: not a readable Parquet file: {exc}") from None
    meta = json.loads((pf.schema_arrow.metadata or {}).get(_META_KEY, b"{}"))
    if meta.get("version") != SCHEMA.version or meta.get("names") != list(SCHEMA.names):
        raise CaptureError(
            f"{path}: written with feature schema version {meta.get('version')}, "
            f"this flowlstm uses version {SCHEMA.version}; regenerate it with 'flowlstm-sensor features'"
        )
    table = pf.read()
    x = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    x = x.astype(np.float32, copy=False).reshape(table.num_rows, WINDOW_SECONDS, SCHEMA.size)
    return WindowFile(table.drop_columns(["x"]), x, meta)
