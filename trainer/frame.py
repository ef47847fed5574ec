"""The training windows as a Spark RDD of blocks: executors read, split, normalize, shuffle and
score them; the driver sees counts, statistics, thresholds and scores, never a window's features.

A block is up to ``BLOCK_ROWS`` windows of one trace as numpy arrays (one pickle per block,
not one Python object per window, between Spark stages).  Every random choice — the per-trace
caps, the family balance, the partition a window trains in, the samples — is drawn by a
generator seeded from the run's seed and the block's key, so a run on ``local[*]`` and on a
cluster train on the same windows in the same partitions.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensor.features import SCHEMA
from sensor.model import Normalization
from sensor.parquet import read_windows

from .dataset import flow_identity
from .labels import taxonomy_family

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext

BLOCK_ROWS = 16384  # windows per block: ~18 MB of float32 features at schema 3


@dataclass(frozen=True)
class Block:
    """Windows of one trace: x (n, 3, F), labels, and what splits, budgets and reports need."""

    key: str  # "trace/part/ordinal" (zero-padded: keys sort in file order), seeds this block's draws
    trace: str
    x: np.ndarray
    y: np.ndarray  # int8
    sec: np.ndarray  # int64
    taxonomy: np.ndarray  # str (object)
    flow: np.ndarray  # uint64, dataset.flow_identity

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Block:
        """The windows at ``rows`` (indices or a mask), in that order."""
        return replace(
            self, x=self.x[rows], y=self.y[rows], sec=self.sec[rows], taxonomy=self.taxonomy[rows], flow=self.flow[rows]
        )

    @property
    def family(self) -> np.ndarray:
        return np.array([taxonomy_family(t) if t else "" for t in self.taxonomy], dtype=object)

    def rng(self, seed: int, purpose: str) -> np.random.Generator:
        """A generator for one kind of draw on this block, the same on every machine."""
        return np.random.default_rng([seed, zlib.crc32(self.key.encode()), zlib.crc32(purpose.encode())])


_KIND_COLUMNS = [SCHEMA.index(n) for n in ("proto_tcp", "proto_udp", "proto_icmp", "dst_group")]


def window_kinds(x: np.ndarray) -> np.ndarray:
    """Per window (raw features, (n, 3, F)), its kind: the protocol of its flow (TCP, UDP, ICMP,
    other) times whether its destination is a group (multicast, broadcast), as a number 0-7."""
    c = x[:, 1, _KIND_COLUMNS] > 0
    proto = np.where(c[:, 0], 0, np.where(c[:, 1], 1, np.where(c[:, 2], 2, 3)))
    kinds: np.ndarray = proto * 2 + c[:, 3]
    return kinds


def read_part(
    path: str, trace: str, max_benign: int, max_anomalous: int, seed: int, min_benign_per_kind: int = 0
) -> list[Block]:
    """One Parquet part as blocks; ``max_benign`` / ``max_anomalous`` (0: all) keep at most that many
    windows of each class, drawn without replacement by a generator seeded from ``seed`` and the trace.

    ``min_benign_per_kind`` tops the benign draw up, per ``window_kinds`` kind, to that many windows
    (or all the kind has): a uniform draw keeps a trace's rare benign kinds (ICMP, IGMP, multicast)
    in proportion, a few windows against the thousands of ICMP attack windows the heads learn from.
    """
    wf = read_windows(path)
    t = wf.table
    y = t.column("label").to_numpy().astype(np.int8)
    keep = np.arange(len(y))
    if max_benign or max_anomalous:
        rng = np.random.default_rng([seed, zlib.crc32(trace.encode())])
        kept = []
        for cls, cap in ((0, max_benign), (1, max_anomalous)):
            idx = np.flatnonzero(y == cls)
            if cap and len(idx) > cap:
                idx = np.sort(rng.choice(idx, size=cap, replace=False))
            kept.append(idx)
        if min_benign_per_kind and len(kept[0]) < (y == 0).sum():
            rest = np.setdiff1d(np.flatnonzero(y == 0), kept[0])
            kept[0] = _top_up(kept[0], rest, window_kinds(wf.x), min_benign_per_kind, rng)
        keep = np.sort(np.concatenate(kept))
    sec = t.column("sec").to_numpy().astype(np.int64)
    tax = np.asarray(t.column("taxonomy").to_pylist(), dtype=object)
    flow = flow_identity(t, keep)
    part = Path(path).stem
    return [
        Block(
            f"{trace}/{part}/{i // BLOCK_ROWS:06d}",
            trace,
            wf.x[keep[i : i + BLOCK_ROWS]],
            y[keep[i : i + BLOCK_ROWS]],
            sec[keep[i : i + BLOCK_ROWS]],
            tax[keep[i : i + BLOCK_ROWS]],
            flow[i : i + BLOCK_ROWS],
        )
        for i in range(0, len(keep), BLOCK_ROWS)
    ]


def _top_up(drawn: np.ndarray, rest: np.ndarray, kinds: np.ndarray, floor: int, rng: np.random.Generator) -> np.ndarray:
    """``drawn`` plus, for each kind with fewer than ``floor`` windows in it, more of ``rest`` of that kind."""
    have = np.bincount(kinds[drawn], minlength=8)
    extra = []
    for kind in np.flatnonzero(have < floor):
        pool = rest[kinds[rest] == kind]
        need = min(len(pool), floor - int(have[kind]))
        if need:
            extra.append(rng.choice(pool, size=need, replace=False))
    return np.sort(np.concatenate([drawn, *extra])) if extra else drawn


PARTS_PER_TASK = 16  # Parquet parts read into one Spark partition (read_blocks)
MIN_TASKS = 4  # but no fewer partitions than this (or than parts), so small inputs still spread


def read_blocks(
    sc: SparkContext,
    features_dir: str | Path,
    traces: set[str] | None = None,
    max_benign: int = 0,
    max_anomalous: int = 0,
    seed: int = 0,
    min_benign_per_kind: int = 0,
) -> RDD[Block]:
    """The ``trace=*/part-*.parquet`` partitions under ``features_dir`` (only ``traces``, if given),
    ``PARTS_PER_TASK`` parts to a Spark partition, persisted on the executors (memory, spilling
    to disk).

    Every pass over the windows (a fold makes dozens: statistics, normalization, each epoch's
    deal, every scoring and counting job) pays a fixed cost per task, and with a task per part
    that cost was most of a fold's time: on local[2] over the corpus's 212 parts (327,761
    windows) a trivial job took 32.6 s and a scoring job 82.1 s, against 3.1 s and 6.2 s on 8
    partitions.  The grouping depends on the parts alone, not on the master, so moments merged
    per partition add up in the same order on local[*] and on a cluster."""
    from pyspark import StorageLevel

    parts = [
        (str(p), p.parent.name.split("=", 1)[1]) for p in sorted(Path(features_dir).glob("trace=*/part-*.parquet"))
    ]
    if not parts:
        raise FileNotFoundError(f"{features_dir}: no trace=*/part-*.parquet files; run 'flowlstm-train features' first")
    parts = [p for p in parts if traces is None or p[1] in traces]
    if not parts:
        raise FileNotFoundError(f"{features_dir}: none of the traces asked for has been extracted")
    tasks = max(min(len(parts), MIN_TASKS), -(-len(parts) // PARTS_PER_TASK))
    rdd = sc.parallelize(parts, tasks).flatMap(
        lambda p: read_part(p[0], p[1], max_benign, max_anomalous, seed, min_benign_per_kind)
    )
    return rdd.persist(StorageLevel.MEMORY_AND_DISK)


# --- what the driver learns about a set of blocks -------------------------------------------------


@dataclass
class Summary:
    """Counts and time spans of a set of blocks, merged on the way to the driver."""

    windows: int
    anomalous: int
    traces: dict[str, list[int]]  # trace -> [windows, anomalous, first sec, last sec]
    families: dict[str, int]  # anomalous windows per family
    blocks: dict[str, dict[str, int]]  # block key -> anomalous windows per family (the balance plan's input)
    n_features: int

    @staticmethod
    def of(b: Block) -> Summary:
        anomalous = b.y == 1
        fams, counts = np.unique(b.family[anomalous].astype(str), return_counts=True)
        per = {str(f): int(n) for f, n in zip(fams, counts, strict=True)}
        span = [int(b.sec.min()), int(b.sec.max())] if len(b) else [0, 0]
        return Summary(
            len(b),
            int(anomalous.sum()),
            {b.trace: [len(b), int(anomalous.sum()), *span]},
            per,
            {b.key: per} if per else {},
            int(b.x.shape[-1]),
        )

    def merge(self, o: Summary) -> Summary:
        traces = dict(self.traces)
        for t, (n, a, lo, hi) in o.traces.items():
            if t in traces:
                n0, a0, lo0, hi0 = traces[t]
                traces[t] = [n0 + n, a0 + a, min(lo0, lo), max(hi0, hi)]
            else:
                traces[t] = [n, a, lo, hi]
        fams = dict(self.families)
        for f, n in o.families.items():
            fams[f] = fams.get(f, 0) + n
        return Summary(
            self.windows + o.windows,
            self.anomalous + o.anomalous,
            traces,
            fams,
            {**self.blocks, **o.blocks},
            max(self.n_features, o.n_features),
        )


def summarize(rdd: RDD[Block]) -> Summary:
    """Counts of ``rdd`` (an empty one: all zero)."""
    empty = Summary(0, 0, {}, {}, {}, 0)
    out: Summary = rdd.map(Summary.of).fold(empty, Summary.merge)
    return out


# --- splits -----------------------------------------------------------------------------------------


Side = Callable[[Block], np.ndarray]  # a block's rows on one side of a split, as a mask


def by_trace(names: Iterable[str], inside: bool = True) -> Side:
    """The windows of the named traces (``inside`` False: of every other trace)."""
    keep = frozenset(names)
    return lambda b: np.full(len(b), (b.trace in keep) == inside)


def time_cuts(s: Summary, test_fraction: float) -> dict[str, int]:
    """Per trace, the first second of its test part: the last ``test_fraction`` of its time span.

    By time, not by count of seconds with windows: a trace whose traffic is dense in one
    stretch (a busy capture placed inside a quiet site) would otherwise put every second
    outside that stretch, and the attacks there, on one side.
    """
    cuts = {}
    for name, (_, _, lo, hi) in s.traces.items():
        cuts[name] = max(lo + int(np.ceil((hi - lo) * (1 - test_fraction))), lo + 1) if hi > lo else hi
    return cuts


def before_cut(cuts: dict[str, int], test: bool) -> Side:
    """The time split's training side (``test`` False: seconds before each trace's cut) or test side."""
    return lambda b: (b.sec >= cuts[b.trace]) if test else (b.sec < cuts[b.trace])


def both(a: Side, b: Side) -> Side:
    """The rows on both sides."""
    return lambda blk: a(blk) & b(blk)


def late_seconds(s: Summary, fraction: float, held: float = 0.0) -> tuple[Side, Side]:
    """Each trace cut by time into (earlier, late): late is the last ``fraction`` of its time
    span before its last ``held`` (the time split's test part, if any), and what follows."""
    late = time_cuts(s, fraction + held)
    return before_cut(late, test=False), before_cut(late, test=True)


def held_seconds(rdd: RDD[Block], family: str) -> dict[str, np.ndarray]:
    """Per trace, the sorted seconds in which ``family`` has an anomalous window."""

    def secs(b: Block) -> list[tuple[str, np.ndarray]]:
        m = (b.y == 1) & (b.family == family)
        return [(b.trace, np.unique(b.sec[m]))] if m.any() else []

    pairs = rdd.flatMap(secs).reduceByKey(lambda a, c: np.union1d(a, c)).collect()
    return dict(pairs)


def in_seconds(held: dict[str, np.ndarray], test: bool) -> Side:
    """The leave-family-out split: test is every window of the held family's seconds (benign ones
    too, so FPR is measured where the unseen attack runs), train is everything else."""
    empty = np.zeros(0, np.int64)
    return lambda b: np.isin(b.sec, held.get(b.trace, empty)) == test


def side(rdd: RDD[Block], *masks: Side) -> RDD[Block]:
    """The windows of ``rdd`` in every one of ``masks``; empty blocks are dropped."""

    def cut(b: Block) -> list[Block]:
        m = np.ones(len(b), bool)
        for f in masks:
            m &= f(b)
        return [b.take(m)] if m.any() else []

    return rdd.flatMap(cut)


# --- normalization ----------------------------------------------------------------------------------


Moments = tuple[int, np.ndarray, np.ndarray]  # (count, mean, sum of squared deviations) per feature


def _moments(b: Block) -> Moments:
    rows = b.x.reshape(-1, b.x.shape[-1])
    rows = rows[rows[:, 0] > 0].astype(np.float64)
    if not len(rows):
        return 0, np.zeros(rows.shape[1]), np.zeros(rows.shape[1])
    mean = rows.mean(axis=0)
    return len(rows), mean, ((rows - mean) ** 2).sum(axis=0)


def _combine(a: Moments, c: Moments) -> Moments:
    """Chan et al.'s pairwise update of (count, mean, sum of squared deviations)."""
    na, ma, sa = a
    nc, mc, scc = c
    if na == 0:
        return c
    if nc == 0:
        return a
    n = na + nc
    d = mc - ma
    return n, ma + d * nc / n, sa + scc + d * d * na * nc / n


def fit_normalization(rdd: RDD[Block], ignored: Sequence[str] = ()) -> Normalization:
    """Mean and scale per feature over the present seconds of the (training) windows, from
    per-block moments merged in float64 (equal to numpy's over the same rows within float32);
    the ``ignored`` features (names) enter every model as 0."""
    n, mean, m2 = rdd.map(_moments).reduce(_combine)
    scale = np.sqrt(m2 / max(n, 1))
    scale = np.where(scale > 1e-6, scale, 1.0)
    mean[0], scale[0] = 0.0, 1.0  # 'present' stays 0/1
    names = list(SCHEMA.names)
    drop = tuple(sorted(names.index(f) for f in ignored))
    return Normalization(mean.astype(np.float32), scale.astype(np.float32), drop)


def normalized(rdd: RDD[Block], norm: Normalization) -> RDD[Block]:
    """``rdd`` with every block's windows normalized."""
    return rdd.map(lambda b: replace(b, x=norm.apply(b.x)))


# --- what trains where ------------------------------------------------------------------------------


def balance_plan(s: Summary, seed: int) -> dict[str, dict[str, int]]:
    """Extra draws per block and family that bring each small attack family up to the mean family.

    A flood or a scan gives thousands of anomalous windows a capture, a beacon or a DHCP
    flood a few dozen: trained on the windows as they come, the supervised head learns four
    families and scores the others as benign (recall 0 on ten of fourteen families in the
    default model's own time split before balancing).  Each family with fewer anomalous
    windows than the mean family gets the difference as extra draws (with replacement),
    shared among its blocks by a seeded multinomial in proportion to their windows of it.
    """
    if not s.families:
        return {}
    target = int(np.ceil(np.mean(list(s.families.values()))))
    rng = np.random.default_rng([seed, 0xBA1])
    plan: dict[str, dict[str, int]] = {}
    for fam in sorted(s.families):
        n = s.families[fam]
        if n >= target:
            continue
        keys = sorted(k for k, per in s.blocks.items() if fam in per)
        counts = np.array([s.blocks[k][fam] for k in keys], float)
        for k, extra in zip(keys, rng.multinomial(target - n, counts / counts.sum()), strict=True):
            if extra:
                plan.setdefault(k, {})[fam] = int(extra)
    return plan


def balanced(b: Block, plan: dict[str, dict[str, int]], seed: int) -> Block:
    """Every window of ``b`` once, and the plan's extra draws of its small families."""
    extra = plan.get(b.key)
    if not extra:
        return b
    rng = b.rng(seed, "balance")
    fam = b.family
    drawn = [
        rng.choice(np.flatnonzero((b.y == 1) & (fam == f)), size=n, replace=True) for f, n in sorted(extra.items())
    ]
    return b.take(np.sort(np.concatenate([np.arange(len(b)), *drawn])))


def scatter(rdd: RDD[Block], partitions: int, seed: int) -> RDD[Block]:
    """The windows dealt at random over ``partitions`` partitions.

    The extraction writes a trace per part, so partitions as read may hold one class only; the
    synchronous Elephas step averages what every partition learnt in its epoch, and a benign-only
    partition would pull the average toward "all benign".  Each window goes to a seeded random
    partition; a partition's pieces stay blocks of their own (one pickle of a whole partition
    would have to fit an executor's JVM at once) and are ordered by key, whatever order the
    shuffle delivers them in, so every run trains on the same sequence.
    """
    from pyspark import StorageLevel

    def deal(b: Block) -> Iterator[tuple[int, Block]]:
        dest = b.rng(seed, "scatter").integers(0, partitions, size=len(b))
        for p in range(partitions):
            m = dest == p
            if m.any():
                yield p, replace(b.take(m), key=f"{b.key}@{p}")

    def order(pieces: Iterator[tuple[int, Block]]) -> Iterator[Block]:
        yield from sorted((b for _, b in pieces), key=lambda b: b.key)

    dealt = rdd.flatMap(deal).partitionBy(partitions, lambda p: p).mapPartitions(order)
    return dealt.persist(StorageLevel.MEMORY_AND_DISK)


def sample(rdd: RDD[Block], fraction: float, seed: int, purpose: str) -> RDD[Block]:
    """Each window kept with probability ``fraction`` (seeded per block and ``purpose``)."""
    if fraction >= 1:
        return rdd

    def pick(b: Block) -> list[Block]:
        m = b.rng(seed, purpose).random(len(b)) < fraction
        return [b.take(m)] if m.any() else []

    return rdd.flatMap(pick)


def gather(rdd: RDD[Block]) -> Block | None:
    """A (small: a sample's) set of blocks joined on the driver, in block-key order."""
    got = sorted(rdd.collect(), key=lambda b: b.key)
    if not got:
        return None
    cols = {c: np.concatenate([getattr(b, c) for b in got]) for c in ("x", "y", "sec", "taxonomy", "flow")}
    return Block("gathered", got[0].trace, **cols)


# --- scoring in the executors ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """A model to score blocks with in the executors: a Keras model as JSON and weights, or a linear
    map (the SVM's), applied to the whole window or (``centre``) its centre second alone."""

    name: str
    token: str = ""  # names the Keras model in each worker's cache (``_worker_cached``)
    json: str = ""
    weights: tuple[np.ndarray, ...] = ()
    coef: np.ndarray | None = None
    intercept: float = 0.0
    centre: bool = False
    logit: bool = True  # scores are logits or margins (squashed by a temperature), not probabilities

    @staticmethod
    def keras(name: str, model: Any, *, centre: bool = False, logit: bool = True) -> Scorer:
        return Scorer(name, uuid.uuid4().hex, model.to_json(), tuple(model.get_weights()), centre=centre, logit=logit)

    @staticmethod
    def linear(name: str, coef: np.ndarray, intercept: float) -> Scorer:
        return Scorer(name, coef=np.asarray(coef, np.float64), intercept=float(intercept))

    def output(self, x: np.ndarray) -> np.ndarray:
        """The model's whole output on windows ``x`` (a reconstruction, for the normal head's own)."""
        xs = x[:, 1:2] if self.centre else x
        if self.coef is not None:
            lin: np.ndarray = xs.reshape(len(xs), -1) @ self.coef + self.intercept
            return lin.astype(np.float32)
        if not len(xs):
            return np.zeros((0, 1), np.float32)
        return _predict(_worker_cached(self.token, self._build), xs)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One score per window."""
        return self.output(x).reshape(len(x), -1)[:, 0]

    def _build(self) -> Any:
        import keras

        model = keras.models.model_from_json(self.json)
        model.set_weights(list(self.weights))
        return model


PREDICT_BATCH = 4096  # windows per call at most
PREDICT_SMALLEST = 256


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    """``model``'s output on ``x``, in batches padded to a power of two (256 to 4096 rows).

    Blocks come in every length, and Keras traces its predict function afresh for each new
    batch shape: scoring blocks of 20–400 windows with ``predict`` took 123 ms a block against
    5 ms for padded ``predict_on_batch`` (60 blocks, one thread), and the held-out scoring of a
    fold ran at 179 windows/s.  Five shapes are traced once per worker; rows are independent
    in these models, so the padding changes no real row's output.
    """
    out = []
    for i in range(0, len(x), PREDICT_BATCH):
        chunk = x[i : i + PREDICT_BATCH]
        n = len(chunk)
        size = max(PREDICT_SMALLEST, 1 << (n - 1).bit_length())
        padded = np.zeros((size, *chunk.shape[1:]), np.float32)
        padded[:n] = chunk
        out.append(np.asarray(model.predict_on_batch(padded))[:n])
    return np.concatenate(out).astype(np.float32)


_CACHE: dict[str, Any] = {}  # models built in this Python worker: a task scores many blocks


def _worker_cached(key: str, build: Callable[[], Any]) -> Any:
    """``build()``'s result, made once per Python worker and ``key``; a few kept at most (each run
    names its models afresh, and a reused worker would otherwise keep every run's)."""
    got = _CACHE.get(key)
    if got is None:
        if len(_CACHE) > 8:
            _CACHE.clear()
        got = _CACHE[key] = build()
    return got


class BundleScorer:
    """A bundle on a path every executor reads, scored as the sensor scores it (LiteRT, its own
    normalization, its heads' combination), loaded once per Python worker."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from sensor.model import ModelBundle

        bundle = _worker_cached(f"bundle:{self.path}", lambda: ModelBundle(self.path))
        out: np.ndarray = bundle.score(x)
        return out.astype(np.float32)


@contextmanager
def score_blocks(
    sc: SparkContext, rdd: RDD[Block], scorers: Sequence[Callable[[np.ndarray], np.ndarray]]
) -> Iterator[RDD[tuple[Block, np.ndarray]]]:
    """Each block with its (n, len(scorers)) float32 scores, for use within the ``with`` block:
    the scorers are broadcast once, and the broadcast is destroyed on leaving it."""
    bc = sc.broadcast(scorers)

    def run(blocks: Iterator[Block]) -> Iterator[tuple[Block, np.ndarray]]:
        models = bc.value
        for b in blocks:
            yield b, np.stack([m(b.x) for m in models], axis=1) if len(b) else np.zeros((0, len(models)), np.float32)

    try:
        yield rdd.mapPartitions(run)
    finally:
        bc.destroy()


def budget_ranks(scored: RDD[tuple[Block, np.ndarray]], budgets: list[float]) -> list[tuple[int, list[float]]]:
    """For each score column and its false-alert budget (per 10,000 flows): the number of benign
    flows and the highest benign flow scores, ``allowed + 1`` of them (descending) where
    ``allowed`` flows may alert: all ``sensor.calibrate.threshold_for_flow_budget`` needs.  A flow's
    score is its highest window's; flows are merged by key across blocks and traces in the
    executors, and only the ranked few reach the driver."""
    from pyspark import StorageLevel

    def tops(item: tuple[Block, np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
        b, s = item
        m = b.y == 0
        if not m.any():
            return
        keys, inv = np.unique(b.flow[m], return_inverse=True)
        top = np.full((len(keys), s.shape[1]), -np.inf)
        np.maximum.at(top, inv.reshape(-1), s[m].astype(np.float64))
        yield from zip(keys.tolist(), top, strict=True)

    flow_tops = scored.flatMap(tops).reduceByKey(np.maximum).persist(StorageLevel.MEMORY_AND_DISK)
    n = flow_tops.count()
    out = []
    for j, budget in enumerate(budgets):
        allowed = int(np.floor(n * budget / 1e4))
        out.append((n, flow_tops.map(lambda kv, j=j: float(kv[1][j])).top(allowed + 1) if n else []))
    flow_tops.unpersist()
    return out
