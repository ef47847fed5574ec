"""Flow stage: packets of one second → per-flow statistics for that second.

Flows are bidirectional 5-tuples.  The *initiator* is whoever sent the first
packet we saw; every statistic is kept in initiator orientation (forward =
initiator → responder).  The table is a set of flat numpy arrays indexed by
slot, looked up through a sorted array of 64-bit key hashes, so one second of
traffic is handled with a fixed number of vectorized operations however many
packets or flows it holds.

Two distinct 5-tuples colliding in 64 bits would share a flow; at a million
live flows the chance of any collision is about 3e-8.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import _flowstats, settings
from .capture.records import HDR_L4, PACKET_DTYPE, TCP_FLAG_NAMES
from .hashing import endpoint_order

NS = 1_000_000_000
_ICMP_PROTOS = (1, 58)  # ICMP, ICMPv6

FLOW_SECOND_DTYPE = np.dtype(
    [
        ("sec", "<i8"),  # epoch second these statistics cover
        ("flow_id", "<u8"),  # unique per flow instance, stable across its seconds
        ("start_ts", "<i8"),  # ns, first packet of the flow
        ("src", "u1", (16,)),  # initiator
        ("dst", "u1", (16,)),  # responder
        # Ports; for ICMP and ICMPv6 the first packet's type and code, as Zeek's conn.log has them.
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("proto", "u1"),
        ("l3", "u1"),
        # 1 if the first packet's ports (ICMP type and code) were captured; 0 when they are
        # unknown (a header cut short, a non-first fragment) and sport/dport read 0.
        ("l4", "u1"),
        ("new", "u1"),  # 1 in the second the flow started
        ("pkts_fwd", "<u4"),
        ("pkts_rev", "<u4"),
        ("bytes_fwd", "<u8"),  # wire bytes
        ("bytes_rev", "<u8"),
        ("total_pkts", "<u8"),  # over the flow's life so far, this second included
        ("total_bytes", "<u8"),
        ("len_mean", "<f4"),  # IP length statistics, both directions
        ("len_std", "<f4"),
        ("len_min", "<f4"),
        ("len_max", "<f4"),
        ("ttl_mean", "<f4"),
        ("ttl_min", "<f4"),
        ("ttl_max", "<f4"),
        ("win_mean", "<f4"),
        ("win_min", "<f4"),
        ("win_max", "<f4"),
        *((f"n_{name}", "<u4") for name in TCP_FLAG_NAMES),
        ("iat_mean", "<f4"),  # seconds between consecutive packets of the flow
        ("iat_std", "<f4"),
        ("iat_min", "<f4"),
        ("iat_max", "<f4"),
        ("duration", "<f4"),  # seconds from the flow's first packet to its last so far
    ]
)


@dataclass(frozen=True)
class FlowConfig:
    """Flow-table limits.  Timeouts are in seconds.  Defaults and the ranges users may set are the
    settings table's (``sensor/settings.py``), which validates every value a user gives."""

    idle_timeout: float = settings.default("features.idle-timeout")
    active_timeout: float = settings.default("features.active-timeout")
    max_flows: int = settings.default("features.max-flows")


@dataclass
class FlowCounters:
    """Running totals of the flow table's life events."""

    created: int = 0
    expired_idle: int = 0
    expired_active: int = 0
    evicted: int = 0  # dropped early by the max_flows cap


# Columns of _flowstats.group_stats's output (the enum in sensor/_flowstats.c).
(_C_CNT, _C_NFWD, _C_BYTES, _C_BYTES_FWD, _C_LEN_SUM, _C_LEN_SQ, _C_LEN_MIN, _C_LEN_MAX,
 _C_TTL_SUM, _C_TTL_MIN, _C_TTL_MAX, _C_WIN_SUM, _C_WIN_MIN, _C_WIN_MAX, _C_FLAG0) = range(15)
_C_LAST_TS = _C_FLAG0 + len(TCP_FLAG_NAMES)
if _flowstats.N_COLS != _C_LAST_TS + 1:
    raise ImportError("sensor._flowstats is out of date; rebuild it (scripts/setup.sh sensor)")


def _offset(name: str) -> int:
    """Byte offset of a PACKET_DTYPE field within a record, where the C kernel reads it."""
    fields = PACKET_DTYPE.fields
    assert fields is not None  # PACKET_DTYPE is a structured dtype
    return fields[name][1]


_STAT_OFFSETS = (_offset("ts"), _offset("wire_len"), _offset("ip_len"), _offset("ttl"), _offset("tcp_flags"),
                 _offset("tcp_win"))


class FlowTable:
    """Bidirectional flow state with idle/active timeouts and a hard size cap."""

    def __init__(self, config: FlowConfig = FlowConfig()):
        self.config = config
        self.counters = FlowCounters()
        self._idle_ns = int(config.idle_timeout * NS)
        self._active_ns = int(config.active_timeout * NS)
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted hashes of live flows
        self._key_slot = np.zeros(0, dtype=np.int64)
        self._cap = 0
        self._free = np.zeros(0, dtype=np.int64)
        self._next_id = 1
        self._grow(65536)

    def __len__(self) -> int:
        return len(self._keys)

    def _grow(self, need: int) -> None:
        cap = max(self._cap * 2, need, 1024)
        def ext(a: np.ndarray | None, dtype: npt.DTypeLike, shape: tuple[int, ...] = ()) -> np.ndarray:
            out = np.zeros((cap, *shape), dtype=dtype)
            if a is not None:
                out[: len(a)] = a
            return out

        g = getattr
        self._hash = ext(g(self, "_hash", None), np.uint64)
        self._first = ext(g(self, "_first", None), np.int64)
        self._last = ext(g(self, "_last", None), np.int64)
        self._id = ext(g(self, "_id", None), np.uint64)
        self._init_low = ext(g(self, "_init_low", None), bool)
        self._src = ext(g(self, "_src", None), np.uint8, (16,))
        self._dst = ext(g(self, "_dst", None), np.uint8, (16,))
        self._sport = ext(g(self, "_sport", None), np.uint16)
        self._dport = ext(g(self, "_dport", None), np.uint16)
        self._proto = ext(g(self, "_proto", None), np.uint8)
        self._l3 = ext(g(self, "_l3", None), np.uint8)
        self._l4 = ext(g(self, "_l4", None), np.uint8)
        self._tot_pkts = ext(g(self, "_tot_pkts", None), np.uint64)
        self._tot_bytes = ext(g(self, "_tot_bytes", None), np.uint64)
        self._free = np.concatenate([np.arange(cap - 1, self._cap - 1, -1, dtype=np.int64), self._free])
        self._cap = cap

    def _remove(self, slots: np.ndarray) -> None:
        if len(slots) == 0:
            return
        pos = np.searchsorted(self._keys, self._hash[slots])
        keep = np.ones(len(self._keys), dtype=bool)
        keep[pos] = False
        self._keys = self._keys[keep]
        self._key_slot = self._key_slot[keep]
        self._free = np.concatenate([self._free, slots])

    def expire(self, now_ns: int) -> None:
        """End flows idle past the timeout at ``now_ns``, then enforce the size cap."""
        live = self._key_slot
        idle = live[self._last[live] + self._idle_ns < now_ns]
        self.counters.expired_idle += len(idle)
        self._remove(idle)
        over = len(self._keys) - self.config.max_flows
        if over > 0:
            live = self._key_slot
            oldest = live[np.argpartition(self._last[live], over - 1)[:over]]
            self.counters.evicted += over
            self._remove(oldest)

    def update(self, packets: np.ndarray, sec: int) -> np.ndarray:
        """Account one second's packets (time-sorted); return its ``FLOW_SECOND_DTYPE`` rows.

        Non-IP packets are ignored.  The rows are sorted by flow_id.
        """
        ip = packets["l3"] != 0
        p = packets if ip.all() else packets[ip]
        if len(p) == 0:
            return np.zeros(0, dtype=FLOW_SECOND_DTYPE)
        ts = p["ts"]
        h, src_low = endpoint_order(p["src"], p["dst"], p["sport"], p["dport"], p["proto"])
        # One stable sort groups packets by flow and keeps each group in time order.
        order = np.argsort(h, kind="stable")
        hs = h[order]
        starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
        uniq = hs[starts]
        first_idx = order[starts]

        pos = np.searchsorted(self._keys, uniq)
        hit = pos < len(self._keys)
        hit[hit] = self._keys[pos[hit]] == uniq[hit]
        slot = np.full(len(uniq), -1, dtype=np.int64)
        slot[hit] = self._key_slot[pos[hit]]

        # A flow whose next packet comes after its idle timeout, or past its
        # active timeout, ends; that packet starts a new flow with the same key.
        t0 = ts[first_idx]
        hs = slot[hit]
        idle = t0[hit] - self._last[hs] > self._idle_ns
        active = ~idle & (t0[hit] - self._first[hs] > self._active_ns)
        self.counters.expired_idle += int(idle.sum())
        self.counters.expired_active += int(active.sum())
        ended = idle | active
        if ended.any():
            self._remove(hs[ended])
            idx = np.flatnonzero(hit)[ended]
            hit[idx] = False
            slot[idx] = -1

        new = np.flatnonzero(~hit)
        is_new = np.zeros(len(uniq), dtype=bool)
        if len(new):
            if len(new) > len(self._free):
                self._grow(self._cap + len(new) - len(self._free))
            ns_slots = self._free[-len(new) :][::-1].copy()
            self._free = self._free[: -len(new)]
            slot[new] = ns_slots
            fi = first_idx[new]
            self._hash[ns_slots] = uniq[new]
            self._first[ns_slots] = ts[fi]
            self._last[ns_slots] = ts[fi]
            self._init_low[ns_slots] = src_low[fi]
            self._id[ns_slots] = np.arange(self._next_id, self._next_id + len(new), dtype=np.uint64)
            self._next_id += len(new)
            self._src[ns_slots] = p["src"][fi]
            self._dst[ns_slots] = p["dst"][fi]
            icmp = np.isin(p["proto"][fi], _ICMP_PROTOS)
            self._sport[ns_slots] = np.where(icmp, p["icmp_type"][fi], p["sport"][fi])
            self._dport[ns_slots] = np.where(icmp, p["icmp_code"][fi], p["dport"][fi])
            self._proto[ns_slots] = p["proto"][fi]
            self._l3[ns_slots] = p["l3"][fi]
            self._l4[ns_slots] = (p["hdr"][fi] & HDR_L4) != 0
            self._tot_pkts[ns_slots] = 0
            self._tot_bytes[ns_slots] = 0
            is_new[new] = True
            self.counters.created += len(new)
            ins = np.searchsorted(self._keys, uniq[new])
            self._keys = np.insert(self._keys, ins, uniq[new])
            self._key_slot = np.insert(self._key_slot, ins, ns_slots)

        return self._second_stats(p, sec, order, starts, slot, src_low, is_new)

    def _second_stats(
        self,
        p: np.ndarray,
        sec: int,
        order: np.ndarray,
        starts: np.ndarray,
        slots: np.ndarray,
        src_low: np.ndarray,
        is_new: np.ndarray,
    ) -> np.ndarray:
        """Statistics per flow group; ``order`` sorts packets into groups beginning at ``starts``.

        Rows come out sorted by flow_id: reductions run in group order and each
        result column is permuted once (cheaper than sorting the records).
        """
        g = len(starts)
        m = np.empty((g, _flowstats.N_COLS), dtype=np.int64)
        ts = np.empty(len(order), dtype=np.int64)
        _flowstats.group_stats(np.ascontiguousarray(p), p.itemsize, *_STAT_OFFSETS, order, starts,
                               src_low.view(np.uint8), self._init_low[slots].view(np.uint8), m, ts)
        # IATs from the flow's previous packet, which for the first packet of
        # the second may lie in an earlier second.
        prev = np.empty_like(ts)
        prev[1:] = ts[:-1]
        prev[starts] = np.where(is_new, -1, self._last[slots])
        has = prev >= 0
        iat = np.where(has, (ts - prev) / NS, 0.0)

        perm = np.argsort(self._id[slots])
        m, slots, is_new = m[perm], slots[perm], is_new[perm]
        cnt = m[:, _C_CNT]

        def add(x: np.ndarray) -> np.ndarray:
            return np.add.reduceat(x, starts, axis=0)[perm]

        out = np.zeros(g, dtype=FLOW_SECOND_DTYPE)
        out["sec"] = sec
        out["flow_id"] = self._id[slots]
        out["start_ts"] = self._first[slots]
        out["src"] = self._src[slots]
        out["dst"] = self._dst[slots]
        out["sport"] = self._sport[slots]
        out["dport"] = self._dport[slots]
        out["proto"] = self._proto[slots]
        out["l3"] = self._l3[slots]
        out["l4"] = self._l4[slots]
        out["new"] = is_new
        nf = m[:, _C_NFWD]
        out["pkts_fwd"] = nf
        out["pkts_rev"] = cnt - nf
        all_bytes = m[:, _C_BYTES].astype(np.uint64)
        bf = m[:, _C_BYTES_FWD].astype(np.uint64)
        out["bytes_fwd"] = bf
        out["bytes_rev"] = all_bytes - bf

        # The integer sums are exact, so these are the bits float reductions would give.
        mean = m[:, _C_LEN_SUM].astype(np.float64) / cnt
        out["len_mean"] = mean
        out["len_std"] = np.sqrt(np.maximum(m[:, _C_LEN_SQ].astype(np.float64) / cnt - mean * mean, 0))
        out["len_min"] = m[:, _C_LEN_MIN]
        out["len_max"] = m[:, _C_LEN_MAX]
        out["ttl_mean"] = m[:, _C_TTL_SUM].astype(np.float64) / cnt
        out["ttl_min"] = m[:, _C_TTL_MIN]
        out["ttl_max"] = m[:, _C_TTL_MAX]
        out["win_mean"] = m[:, _C_WIN_SUM].astype(np.float64) / cnt
        out["win_min"] = m[:, _C_WIN_MIN]
        out["win_max"] = m[:, _C_WIN_MAX]
        for i, name in enumerate(TCP_FLAG_NAMES):
            out[f"n_{name}"] = m[:, _C_FLAG0 + i]

        n_iat = add(has.astype(np.int64))
        safe = np.maximum(n_iat, 1)
        im = add(iat) / safe
        out["iat_mean"] = im
        out["iat_std"] = np.sqrt(np.maximum(add(iat * iat) / safe - im * im, 0))
        out["iat_min"] = np.where(n_iat > 0, np.minimum.reduceat(np.where(has, iat, np.inf), starts)[perm], 0)
        out["iat_max"] = np.maximum.reduceat(iat, starts)[perm]

        last = m[:, _C_LAST_TS]
        self._last[slots] = last
        self._tot_pkts[slots] += cnt.astype(np.uint64)
        self._tot_bytes[slots] += all_bytes
        out["total_pkts"] = self._tot_pkts[slots]
        out["total_bytes"] = self._tot_bytes[slots]
        out["duration"] = (last - self._first[slots]) / NS
        return out
