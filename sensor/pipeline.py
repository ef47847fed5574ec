"""The feature path, wired: packet batches → closed seconds → flows, aggregates,
context → feature rows → [t−1, t, t+1] windows.

This is the one implementation of the features: the sensor runs it on live
traffic and files, and the trainer runs it inside Spark tasks.

A second closes once a packet at least ``slack`` seconds past its end has been
seen (or the input ends), so packets reordered by less than ``slack`` still
count; later ones are dropped and counted in ``late_packets``.

Packet time that goes back by more than ``RESTART_AFTER`` seconds for most of
a batch is not reordering: the clock was stepped, capture files were given out
of order, or one packet carried a bogus future timestamp that pushed the stream
ahead.  Dropping everything until time caught up would blind the sensor, so the
path finishes what it holds (every pending window is emitted) and starts a new
clock at the new time, counted in ``clock_restarts``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from . import settings
from .aggregate import AggregateConfig, AggregateSet, aggregate_second
from .capture import read_packets
from .capture.records import PACKET_DTYPE
from .context import LinkBaseline, second_context
from .features import SCHEMA, aggregate_match, flow_second_features
from .flows import NS, FlowConfig, FlowTable
from .history import HistoryConfig, HostHistory
from .windows import WindowAssembler, WindowBatch, window_keys

log = logging.getLogger("flowlstm.pipeline")

RESTART_AFTER = 60  # seconds back in packet time that are a clock step, not reordering


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the whole feature path."""

    flows: FlowConfig = field(default_factory=FlowConfig)
    # The model needs the address aggregates only; inspect turns protocols back on.
    aggregate: AggregateConfig = field(default_factory=lambda: AggregateConfig(protocols=False))
    slack: float = settings.default("features.slack")


@dataclass(frozen=True)
class SecondReport:
    """What one closed second looked like: its context record, flow rows and aggregates."""

    sec: int
    context: np.ndarray  # one CONTEXT_DTYPE record
    flows: np.ndarray  # FLOW_SECOND_DTYPE rows
    aggregates: AggregateSet


@dataclass
class PipelineOutput:
    seconds: list[SecondReport] = field(default_factory=list)
    windows: list[WindowBatch] = field(default_factory=list)

    def extend(self, other: PipelineOutput) -> None:
        self.seconds += other.seconds
        self.windows += other.windows


SecondHook = Callable[[int, np.ndarray, np.ndarray], None]


class FeaturePipeline:
    """Streaming feature path; memory is bounded by the flow cap and one second of packets.

    ``on_second(sec, packets, flow_rows)``, if given, sees each closed second's
    time-sorted packets and flow rows; the trainer labels flow-seconds there.
    """

    def __init__(
        self,
        config: PipelineConfig = PipelineConfig(),
        on_second: SecondHook | None = None,
        emit_from: int | None = None,
    ):
        self.config = config
        self.on_second = on_second
        # Seconds before emit_from − 1 only warm the state (flows, host history, link
        # baseline): no aggregates, features or windows, which are most of a second's cost.
        self.emit_from = emit_from
        self.late_packets = 0
        self.packets = 0
        self.clock_restarts = 0
        self._slack_ns = int(config.slack * NS)
        self.flows = FlowTable(config.flows)
        self.baseline = LinkBaseline()
        self.history = HostHistory(HistoryConfig.for_flows(config.flows.max_flows))
        self._start_clock()

    def _start_clock(self) -> None:
        self.windows = WindowAssembler(SCHEMA.size)
        self._next: int | None = None  # first second not yet closed
        self._last_active: int | None = None  # last closed second that had packets
        self._max_ts = -1
        self._pending: list[np.ndarray] = []

    def push(self, batch: np.ndarray) -> PipelineOutput:
        """Feed one ``PACKET_DTYPE`` batch; return the seconds and windows it completes."""
        if batch.dtype != PACKET_DTYPE:
            raise TypeError("push() takes PACKET_DTYPE batches")
        if len(batch) == 0:
            return PipelineOutput()
        self.packets += len(batch)
        ts = batch["ts"]
        if self._next is None:
            self._next = int(ts.min() // NS)
        late = ts < self._next * NS
        if late.any():
            far = ts < self._max_ts - RESTART_AFTER * NS
            if 2 * np.count_nonzero(far) > len(ts):
                return self._restart_clock(batch, far)
            self.late_packets += int(late.sum())
            batch = batch[~late]
            ts = batch["ts"]
        if len(batch):
            self._pending.append(batch)
            self._max_ts = max(self._max_ts, int(ts.max()))
        return self._close_before((self._max_ts - self._slack_ns) // NS)

    def _restart_clock(self, batch: np.ndarray, far: np.ndarray) -> PipelineOutput:
        back = (self._max_ts - int(np.median(batch["ts"][far]))) / NS
        log.warning(
            "packet time went back %.0f s (a clock step, capture files out of order, or a bogus "
            "timestamp before); pending windows emitted, counting restarts from the new time",
            back,
        )
        self.packets -= len(batch)  # each part is counted again by push
        out = self.push(batch[~far])  # the batch's packets still in the old time close with it
        out.extend(self.finish())
        # The flow table starts afresh, as its timeouts are in the old time; its counters and
        # flow ids go on.
        old = self.flows
        self.flows = FlowTable(self.config.flows)
        self.flows.carry_over(old)
        # So do the link's baseline and the host history: after files out of order or a stepped
        # clock the seconds that follow are not the continuation of the ones they followed.
        self.baseline = LinkBaseline()
        self.history = HostHistory(self.history.config)
        self._start_clock()
        self.clock_restarts += 1
        out.extend(self.push(batch[far]))
        return out

    def tick(self, now_ns: int) -> PipelineOutput:
        """Close seconds by the clock when traffic is idle (live capture)."""
        if self._next is None:
            return PipelineOutput()
        self._max_ts = max(self._max_ts, now_ns)
        return self._close_before((self._max_ts - self._slack_ns) // NS)

    def finish(self) -> PipelineOutput:
        """End of input: close every second and emit every remaining window."""
        out = PipelineOutput()
        if self._next is not None:
            out = self._close_before(self._max_ts // NS + 1)
        out.windows += self.windows.flush()
        return out

    def _close_before(self, limit: int) -> PipelineOutput:
        out = PipelineOutput()
        if self._next is None or self._next >= limit:
            return out
        if self._pending:
            p = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            ts = p["ts"]
            if len(ts) > 1 and not np.all(ts[1:] >= ts[:-1]):  # files and live capture are nearly always in order
                p = p[np.argsort(ts, kind="stable")]
        else:
            p = np.zeros(0, dtype=PACKET_DTYPE)
        while self._next < limit:
            s = self._next
            i = int(np.searchsorted(p["ts"], (s + 1) * NS))
            chunk, p = p[:i], p[i:]
            if len(chunk) or (self._last_active is not None and s <= self._last_active + 2):
                # Seconds right after traffic close even when silent, so the
                # windows around them are emitted on time.
                out.extend(self._close_second(s, chunk))
                self._next = s + 1
            else:
                # Idle gap: jump to the next packet's second (or the limit).
                nxt = int(p["ts"][0] // NS) if len(p) else limit
                self._next = min(max(nxt, s + 1), limit)
                self.flows.expire(self._next * NS)
        self._pending = [p] if len(p) else []
        return out

    def _close_second(self, s: int, packets: np.ndarray) -> PipelineOutput:
        is_ip = packets["l3"] != 0
        ip = packets if is_ip.all() else packets[is_ip]
        fs = self.flows.update(ip, s)
        self.flows.expire((s + 1) * NS)
        if len(packets):
            self._last_active = s
        if self.emit_from is not None and s < self.emit_from - 1:
            self.history.update(fs, s)
            self.baseline.deviation(second_context(packets, fs, s, ip))
            return PipelineOutput()
        if self.on_second is not None:
            self.on_second(s, packets, fs)
        agg = aggregate_second(ip, self.config.aggregate)
        ctx = second_context(packets, fs, s, ip)
        fwd, rev = aggregate_match(agg, fs)
        x = flow_second_features(fs, ctx, self.baseline.deviation(ctx), fwd, rev, self.history.update(fs, s))
        wins = self.windows.push(s, window_keys(fs), x)
        if self.emit_from is not None:
            wins = [w for w in wins if w.sec >= self.emit_from]
        return PipelineOutput([SecondReport(s, ctx, fs, agg)], wins)


def run_files(
    paths: Iterable[str], config: PipelineConfig = PipelineConfig(), on_second: SecondHook | None = None
) -> Iterator[PipelineOutput]:
    """Run the pipeline over capture files in order (one stream); yield each ``PipelineOutput``."""
    pipe = FeaturePipeline(config, on_second)
    for path in paths:
        for batch in read_packets(path):
            yield pipe.push(batch)
    yield pipe.finish()


def run_range(
    path: str,
    start: int,
    end: int,
    warm_up: int,
    config: PipelineConfig = PipelineConfig(),
    on_second: SecondHook | None = None,
) -> Iterator[PipelineOutput]:
    """The windows of one capture whose centre second lies in ``[start, end)``, for a task that
    extracts one time range of a long trace while others extract the rest.

    The pipeline starts ``warm_up`` seconds before ``start`` (those seconds only fill its state)
    and reads up to the close of second ``end`` (the t+1 of the last window).  A window
    comes out bit-equal to the uncut run's when nothing before the warm-up reaches it: its
    flow and that flow's key started after ``start − warm_up``, and the host history and link
    baseline had forgotten the seconds before (they decay as e^(−warm_up/tau)).  The capture
    must run forward in time (the caller checks): packet time, not file position, picks the
    packets.  Reading the packets before the warm-up costs a decode and no more.
    """
    pipe = FeaturePipeline(config, on_second, emit_from=start)
    lo, hi = (start - warm_up) * NS, (end + 1) * NS
    # The uncut run closes second ``end`` at the first batch reaching slack past it; packets of
    # the second that come later are late there too.
    stop = hi + int(config.slack * NS)
    for batch in read_packets(path):
        ts = batch["ts"]
        if len(ts) == 0 or ts.max() < lo:
            continue
        keep = (ts >= lo) & (ts < hi)
        yield _before(pipe.push(batch if keep.all() else batch[keep]), end)
        if ts.max() >= stop:
            break
    yield _before(pipe.finish(), end)


def _before(out: PipelineOutput, end: int) -> PipelineOutput:
    out.windows = [w for w in out.windows if w.sec < end]
    return out
