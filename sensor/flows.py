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

from . import _flowstats, settings
from .capture.fragments import first_fragments
from .capture.records import (
    FRAG_FRAGMENT,
    FRAG_MF,
    FRAG_NONFIRST,
    HDR_L4,
    HDR_OPTIONS,
    HDR_TRUNC,
    ICMP_PROTOS,
    PACKET_DTYPE,
    TCP_ACK,
    TCP_FIN,
    TCP_FLAG_NAMES,
    TCP_RST,
    TCP_SYN,
    TCP_URG,
)
from .hashing import endpoint_order

NS = 1_000_000_000

ANOMALY_NAMES = ("frag", "bad_frag", "options", "bad_tcp")
# A fragment that is not the last yet far shorter than any link's MTU (RFC 1858's tiny
# fragments, teardrop's pieces); ordinary fragmentation cuts at the MTU, 576 bytes at least.
TINY_FRAGMENT = 400


def packet_ports(packets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (sport, dport) the flow table keys each packet by: its own ports, or for a non-first
    fragment those of its datagram's first fragment (``first_fragments``), so a fragmented
    datagram stays in its flow as it does after Suricata's or Zeek's reassembly.

    ``packets`` are one batch, time-sorted; the trainer's labeller keys packets by this too.
    Every fragment takes part: a protocol without ports reads 0 in its first fragment as well.
    """
    sport, dport = packets["sport"], packets["dport"]
    tgt, srow = first_fragments(packets)
    if len(tgt):
        sport, dport = sport.copy(), dport.copy()
        sport[tgt] = sport[srow]
        dport[tgt] = dport[srow]
    return sport, dport


def row_keys(rows: np.ndarray) -> np.ndarray:
    """The flow-table key of each ``FLOW_SECOND_DTYPE`` row, as ``endpoint_order`` gives it for the
    flow's packets.

    The table keys a flow by its packets' ports, which read 0 for ICMP; the rows report the
    first packet's ICMP type and code there instead, so keying a row by its own columns
    would miss every ICMP flow (it did: the trainer's labels never reached one).
    """
    icmp = np.isin(rows["proto"], ICMP_PROTOS)
    sport = np.where(icmp, 0, rows["sport"])
    dport = np.where(icmp, 0, rows["dport"])
    keys, _ = endpoint_order(rows["src"], rows["dst"], sport, dport, rows["proto"])
    return keys


def header_anomalies(p: np.ndarray) -> np.ndarray | None:
    """Per-packet counts (N, 4) for ``ANOMALY_NAMES``, or None when no packet has any.

    ``frag``: the packet is a fragment.  ``bad_frag``: a fragment no ordinary stack makes: a
    tiny non-last one, one whose end lies past the 65,535 bytes of an IP datagram (ping of
    death), an IPv6 atomic fragment (a fragment header on a whole datagram, RFC 8021).
    ``options``: IPv4 options or IPv6 extension headers (``HDR_OPTIONS``).  ``bad_tcp``: a TCP
    flag combination no connection uses: none at all, SYN with FIN or RST, FIN or URG without
    ACK (null, Xmas, SYN-FIN and FIN scans).
    """
    frag, hdr = p["frag"], p["hdr"]
    tcp = (p["proto"] == 6) & ((hdr & (HDR_L4 | HDR_TRUNC)) == HDR_L4)
    f = p["tcp_flags"]
    bad_tcp = tcp & (
        ((f & 0xFF) == 0)
        | ((f & (TCP_SYN | TCP_FIN)) == (TCP_SYN | TCP_FIN))
        | ((f & (TCP_SYN | TCP_RST)) == (TCP_SYN | TCP_RST))
        | (((f & (TCP_FIN | TCP_URG)) != 0) & ((f & TCP_ACK) == 0))
    )
    isfrag = (frag & FRAG_FRAGMENT) != 0
    options = (hdr & HDR_OPTIONS) != 0
    if not (isfrag.any() or options.any() or bad_tcp.any()):
        return None
    mf = (frag & FRAG_MF) != 0
    end = p["frag_off"].astype(np.int64) * 8 + p["ip_len"]
    atomic = isfrag & ~mf & ((frag & FRAG_NONFIRST) == 0)
    bad_frag = isfrag & ((mf & (p["ip_len"] < TINY_FRAGMENT)) | (end > 65535) | atomic)
    return np.stack([isfrag, bad_frag, options, bad_tcp], axis=1).astype(np.int64)


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
        ("total_pkts_rev", "<u8"),  # responder → initiator over the flow's life: 0 = one-way so far
        ("first_flags", "u1"),  # TCP header flags byte of the flow's first packet seen (0: not TCP)
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
        # Header anomalies this second (``header_anomalies``): what a decoder would flag and no
        # ordinary stack sends, each a count of packets.
        *((f"n_{name}", "<u4") for name in ANOMALY_NAMES),
    ]
)


# What one tracked flow costs in the table (its slot's columns, key and free-list entries), and
# what one flow active in a second costs on the way to its windows (flow rows, reductions,
# feature rows of three seconds, the window batch and its normalized copy).  Measured with
# bench/throughput.py --flood (peak RSS over flows; see docs/daemon.md "Memory").
# The table: 112 measured, plus the 9 bytes of first_flags and total_pkts_rev, plus 27 for the
# host history's tables (sensor/history.py: BYTES_PER_SLOT 106, one slot per four flows).
TABLE_BYTES_PER_FLOW = 148
SECOND_BYTES_PER_FLOW = 3072
MIN_ACTIVE = 1024  # the budget must leave room for at least this many flows in a second


@dataclass(frozen=True)
class FlowConfig:
    """Flow-table limits.  Timeouts are in seconds.  Defaults and the ranges users may set are the
    settings table's (``sensor/settings.py``), which validates every value a user gives.

    ``max_flows`` bounds the table; ``memory_mb`` bounds the feature path's working memory, which
    sets how many flows one second may carry to windows (``max_active``).  Flows beyond either
    limit are shed (not tracked, counted); their packets still count in the second's context
    and aggregates, so a flood that sheds flows is still seen whole.
    """

    idle_timeout: float = settings.default("features.idle-timeout")
    active_timeout: float = settings.default("features.active-timeout")
    max_flows: int = settings.default("features.max-flows")
    memory_mb: int = settings.default("features.memory-mb")

    @property
    def max_active(self) -> int:
        """Flows one second may carry to windows within ``memory_mb`` (after the table's share)."""
        free = (self.memory_mb << 20) - self.max_flows * TABLE_BYTES_PER_FLOW
        return max(MIN_ACTIVE, free // SECOND_BYTES_PER_FLOW)

    def budget_problem(self) -> str | None:
        """Why ``memory_mb`` cannot hold ``max_flows`` and a second's work, or None."""
        need = (self.max_flows * TABLE_BYTES_PER_FLOW + MIN_ACTIVE * SECOND_BYTES_PER_FLOW + (1 << 20) - 1) >> 20
        if need <= self.memory_mb:
            return None
        return (
            f"features.max-flows {self.max_flows} needs at least {need} MiB of features.memory-mb "
            f"(it is {self.memory_mb}); raise features.memory-mb or lower features.max-flows"
        )


@dataclass
class FlowCounters:
    """Running totals of the flow table's life events."""

    created: int = 0
    expired_idle: int = 0
    expired_active: int = 0
    evicted: int = 0  # ended early, longest idle first, to make room under max_flows
    shed: int = 0  # flow-seconds not tracked: the table or the second's budget was full
    shed_packets: int = 0  # their packets (still in context and aggregates)


# Columns of _flowstats.group_stats's output (the enum in sensor/_flowstats.c).
(
    _C_CNT,
    _C_NFWD,
    _C_BYTES,
    _C_BYTES_FWD,
    _C_LEN_SUM,
    _C_LEN_SQ,
    _C_LEN_MIN,
    _C_LEN_MAX,
    _C_TTL_SUM,
    _C_TTL_MIN,
    _C_TTL_MAX,
    _C_WIN_SUM,
    _C_WIN_MIN,
    _C_WIN_MAX,
    _C_FLAG0,
) = range(15)
_C_LAST_TS = _C_FLAG0 + len(TCP_FLAG_NAMES)
if _flowstats.N_COLS != _C_LAST_TS + 1:
    raise ImportError("sensor._flowstats is out of date; rebuild it (scripts/setup.sh sensor)")


def _offset(name: str) -> int:
    """Byte offset of a PACKET_DTYPE field within a record, where the C kernel reads it."""
    fields = PACKET_DTYPE.fields
    assert fields is not None  # PACKET_DTYPE is a structured dtype
    return fields[name][1]


_STAT_OFFSETS = (
    _offset("ts"),
    _offset("wire_len"),
    _offset("ip_len"),
    _offset("ttl"),
    _offset("tcp_flags"),
    _offset("tcp_win"),
)


class FlowTable:
    """Bidirectional flow state with idle/active timeouts and a hard size cap."""

    def __init__(self, config: FlowConfig = FlowConfig()):
        self.config = config
        self.counters = FlowCounters()
        self._idle_ns = int(config.idle_timeout * NS)
        self._active_ns = int(config.active_timeout * NS)
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted hashes of live flows
        self._key_slot = np.zeros(0, dtype=np.int64)
        # Every column is allocated at the cap once: np.zeros is calloc, so pages become
        # resident only as slots are used, and the table never copies itself to grow.
        cap = config.max_flows

        def col(dtype: type | str, shape: tuple[int, ...] = ()) -> np.ndarray:
            return np.zeros((cap, *shape), dtype=dtype)

        self._hash, self._first, self._last, self._id = col(np.uint64), col(np.int64), col(np.int64), col(np.uint64)
        self._init_low = col(bool)
        self._src, self._dst = col(np.uint8, (16,)), col(np.uint8, (16,))
        self._sport, self._dport = col(np.uint16), col(np.uint16)
        self._proto, self._l3, self._l4 = col(np.uint8), col(np.uint8), col(np.uint8)
        self._tot_pkts, self._tot_bytes = col(np.uint64), col(np.uint64)
        self._tot_rev, self._first_flags = col(np.uint64), col(np.uint8)
        self._free = np.zeros(0, dtype=np.int64)  # slots given back; slots >= _high were never used
        self._high = 0
        self._next_id = 1

    def carry_over(self, old: FlowTable) -> None:
        """Continue ``old``'s counters and flow ids in this new, empty table (a clock restart), so
        a flow id stays unique within a run: what names a flow across the run's windows."""
        self.counters = old.counters
        self._next_id = old._next_id

    def __len__(self) -> int:
        return len(self._keys)

    def _take(self, n: int) -> np.ndarray:
        """``n`` free slots (the caller made sure there are)."""
        reuse = min(n, len(self._free))
        slots = self._free[len(self._free) - reuse :][::-1].copy()
        self._free = self._free[: len(self._free) - reuse]
        fresh = np.arange(self._high, self._high + n - reuse, dtype=np.int64)
        self._high += n - reuse
        return np.concatenate([slots, fresh])

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
        """End flows idle past the timeout at ``now_ns``."""
        live = self._key_slot
        idle = live[self._last[live] + self._idle_ns < now_ns]
        self.counters.expired_idle += len(idle)
        self._remove(idle)

    def update(self, packets: np.ndarray, sec: int) -> np.ndarray:
        """Account one second's packets (time-sorted); return its ``FLOW_SECOND_DTYPE`` rows.

        Non-IP packets are ignored.  The rows are sorted by flow_id.
        """
        ip = packets["l3"] != 0
        p = packets if ip.all() else packets[ip]
        if len(p) == 0:
            return np.zeros(0, dtype=FLOW_SECOND_DTYPE)
        ts = p["ts"]
        sport, dport = packet_ports(p)
        h, src_low = endpoint_order(p["src"], p["dst"], sport, dport, p["proto"])
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
        keep = self._admit(hit, slot, ts[first_idx])
        if keep is not None:  # over a limit: account only the admitted flows' packets
            grp = np.repeat(keep, np.diff(np.r_[starts, len(hs)]))
            mask = np.empty(len(p), dtype=bool)
            mask[order] = grp
            self.counters.shed += int(len(keep) - keep.sum())
            self.counters.shed_packets += int(len(p) - mask.sum())
            return self.update(p[mask], sec)

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
            ns_slots = self._take(len(new))
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
            icmp = np.isin(p["proto"][fi], ICMP_PROTOS)
            self._sport[ns_slots] = np.where(icmp, p["icmp_type"][fi], sport[fi])
            self._dport[ns_slots] = np.where(icmp, p["icmp_code"][fi], dport[fi])
            self._proto[ns_slots] = p["proto"][fi]
            self._l3[ns_slots] = p["l3"][fi]
            self._l4[ns_slots] = (p["hdr"][fi] & HDR_L4) != 0
            self._tot_pkts[ns_slots] = 0
            self._tot_bytes[ns_slots] = 0
            self._tot_rev[ns_slots] = 0
            flags = np.where(p["proto"][fi] == 6, p["tcp_flags"][fi] & 0xFF, 0)  # NS (bit 8) left out
            self._first_flags[ns_slots] = flags.astype(np.uint8)
            is_new[new] = True
            self.counters.created += len(new)
            ins = np.searchsorted(self._keys, uniq[new])
            self._keys = np.insert(self._keys, ins, uniq[new])
            self._key_slot = np.insert(self._key_slot, ins, ns_slots)

        return self._second_stats(p, sec, order, starts, slot, src_low, is_new)

    def _admit(self, hit: np.ndarray, slot: np.ndarray, t0: np.ndarray) -> np.ndarray | None:
        """Make room for this second's new flows; None when all fit, else which groups to keep.

        New flows need table slots: the longest idle flows not seen this second are evicted
        for them.  Flows with rows this second are bounded by ``max_active``: flows already
        tracked keep theirs first (the oldest first), then new flows in order of arrival.
        """
        cfg = self.config
        n_new = len(hit) - int(np.count_nonzero(hit))
        room = cfg.max_flows - len(self._keys)
        if n_new > room:
            live = self._key_slot
            quiet = np.ones(cfg.max_flows, dtype=bool)
            quiet[slot[hit]] = False
            idle = live[quiet[live]]
            k = min(n_new - room, len(idle))
            if k:
                self.counters.evicted += k
                self._remove(idle[np.argpartition(self._last[idle], k - 1)[:k]])
                room += k
        rows = cfg.max_active
        if n_new <= room and len(hit) <= rows:
            return None
        keep = np.zeros(len(hit), dtype=bool)
        old = np.flatnonzero(hit)
        old = old[np.argsort(self._first[slot[old]], kind="stable")][:rows]
        keep[old] = True
        new = np.flatnonzero(~hit)
        new = new[np.argsort(t0[new], kind="stable")][: max(0, min(room, rows - len(old)))]
        keep[new] = True
        return keep

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
        _flowstats.group_stats(
            np.ascontiguousarray(p),
            p.itemsize,
            *_STAT_OFFSETS,
            order,
            starts,
            src_low.view(np.uint8),
            self._init_low[slots].view(np.uint8),
            m,
            ts,
        )
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

        anomalies = header_anomalies(p)
        if anomalies is not None:
            counts = np.add.reduceat(anomalies[order], starts, axis=0)[perm]
            for i, name in enumerate(ANOMALY_NAMES):
                out[f"n_{name}"] = counts[:, i]

        last = m[:, _C_LAST_TS]
        self._last[slots] = last
        self._tot_pkts[slots] += cnt.astype(np.uint64)
        self._tot_bytes[slots] += all_bytes
        self._tot_rev[slots] += (cnt - nf).astype(np.uint64)
        out["total_pkts"] = self._tot_pkts[slots]
        out["total_bytes"] = self._tot_bytes[slots]
        out["total_pkts_rev"] = self._tot_rev[slots]
        out["first_flags"] = self._first_flags[slots]
        out["duration"] = (last - self._first[slots]) / NS
        return out
