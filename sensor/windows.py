"""Window stage: per-flow feature rows of consecutive seconds → [t−1, t, t+1] windows.

A window centred on second t exists for every flow with a packet in t.  It is
emitted once second t+1 has closed, so the sensor runs one second behind the
traffic.  A neighbouring second in which the flow was silent is a row of zeros
whose ``present`` feature (column 0) is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.lib.recfunctions as rfn

from .flows import FLOW_SECOND_DTYPE

WINDOW_SECONDS = 3
# The flow-second columns that travel with each window: enough to name the flow
# in an alert and to report its counters, without the model features.
KEY_FIELDS = (
    "sec",
    "flow_id",
    "start_ts",
    "src",
    "dst",
    "sport",
    "dport",
    "proto",
    "l3",
    "l4",
    "pkts_fwd",
    "pkts_rev",
    "bytes_fwd",
    "bytes_rev",
    "total_pkts",
    "total_bytes",
)
KEY_DTYPE = np.dtype([(name, FLOW_SECOND_DTYPE[name]) for name in KEY_FIELDS])


def window_keys(flow_seconds: np.ndarray) -> np.ndarray:
    """The ``KEY_DTYPE`` columns of ``FLOW_SECOND_DTYPE`` rows."""
    return rfn.repack_fields(flow_seconds[list(KEY_FIELDS)])


@dataclass(frozen=True)
class WindowBatch:
    """All windows centred on one second.

    ``keys`` (``KEY_DTYPE``, sorted by flow_id) names each window's flow and
    carries its counters for the centre second; ``x`` is (N, 3, F) float32.
    """

    sec: int
    keys: np.ndarray
    x: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class _Second:
    keys: np.ndarray
    x: np.ndarray


def _fill(out: np.ndarray, center_ids: np.ndarray, other: _Second | None) -> None:
    """Copy ``other``'s rows for the centre flows into ``out`` (already zero)."""
    if other is None or len(other.keys) == 0:
        return
    ids = other.keys["flow_id"]
    pos = np.minimum(np.searchsorted(ids, center_ids), len(ids) - 1)
    found = np.flatnonzero(ids[pos] == center_ids)
    out[found] = other.x[pos[found]]


class WindowAssembler:
    """Collects each closed second's feature rows and emits finished windows."""

    def __init__(self, n_features: int):
        self.n_features = n_features
        self._seconds: dict[int, _Second] = {}
        self._pending: list[int] = []  # centres not yet emitted, ascending

    def push(self, sec: int, keys: np.ndarray, x: np.ndarray) -> list[WindowBatch]:
        """Add closed second ``sec`` (keys sorted by flow_id; x is (N, F)).

        Seconds must arrive in increasing order; a second that had no packets
        need not be pushed.  Returns the windows this completes.
        """
        if self._pending and sec <= self._pending[-1]:
            raise ValueError(f"second {sec} pushed after second {self._pending[-1]}")
        if x.shape != (len(keys), self.n_features):
            raise ValueError(f"feature rows have shape {x.shape}, expected ({len(keys)}, {self.n_features})")
        if keys.dtype != KEY_DTYPE:
            raise ValueError("keys must be KEY_DTYPE records (see window_keys)")
        self._seconds[sec] = _Second(keys, x)
        self._pending.append(sec)
        return self._emit(upto=sec - 1)

    def flush(self) -> list[WindowBatch]:
        """End of input: emit every remaining centre, later seconds counting as silent."""
        return self._emit(upto=None)

    def _emit(self, upto: int | None) -> list[WindowBatch]:
        out = []
        while self._pending and (upto is None or self._pending[0] <= upto):
            c = self._pending.pop(0)
            center = self._seconds[c]
            if len(center.keys):
                ids = center.keys["flow_id"]
                # Zeroed pages from the allocator: absent seconds cost nothing to write.
                x = np.zeros((len(ids), 3, self.n_features), dtype=np.float32)
                _fill(x[:, 0], ids, self._seconds.get(c - 1))
                x[:, 1] = center.x
                _fill(x[:, 2], ids, self._seconds.get(c + 1))
                out.append(WindowBatch(c, center.keys, x))
        oldest_needed = (self._pending[0] if self._pending else (upto or 0) + 1) - 1
        for s in [s for s in self._seconds if s < oldest_needed]:
            del self._seconds[s]
        if upto is None:
            self._seconds.clear()
        return out
