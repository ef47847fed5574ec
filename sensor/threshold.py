"""Alert thresholding with Suricata's threshold.config semantics, on event time.

A rule applies to one signature id (or to all, ``sid=0``):

- ``limit``: at most ``count`` alerts per ``seconds`` per tracked key;
- ``threshold``: one alert every ``count`` matches within ``seconds``;
- ``both``: one alert per ``seconds`` once ``count`` matches were seen in it;

tracked ``by_src``, ``by_dst``, ``by_rule`` (one key per signature) or
``by_both`` (source and destination).  Time is the alerts' own (the window's
second), so replaying a pcap gives the same alerts as seeing it live.  Every
suppressed alert is counted; the next alert emitted for the same key carries
that count in ``alert.metadata.flowlstm_suppressed``, so nothing disappears
silently.  Decisions are made on arrays before any alert record is built.
``max_per_second`` caps all alerts of one second as a safety valve.

``corroborate`` (seconds; 0: off) holds back *lone* candidates: an anomaly of one flow,
the only member of its alert in its second.  One flow that scores like one member of a
flood, for one second, is what most false alerts on networks the model never saw are
(docs/model/folds/README.md); an attack of one flow — a DoS connection, a beacon, a tunnel —
comes back.  A lone candidate becomes an alert only if its destination was anomalous
(in any candidate, lone or not) in packets of an earlier second, within ``corroborate``
seconds, than the newest packets the candidate shows.  Seconds are those of packets, not of
windows: windows overlap, so a flow active in seconds s and s+1 is judged on both in the
window of s, and the window of s+1 shows it nothing new; counted by window second, such a
flow corroborated itself (in the demo's MAWI background, two flows of two packets to port
443, a second apart, alerted so).  Held-back candidates are counted as suppressed.
Candidates of several flows are never held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .signatures import DEFAULT_SIGNATURES

LIMIT, THRESHOLD, BOTH = "limit", "threshold", "both"
TRACKS = ("by_src", "by_dst", "by_rule", "by_both")


@dataclass(frozen=True)
class ThresholdRule:
    type: str = LIMIT
    track: str = "by_dst"
    count: int = 1
    seconds: int = 60
    sid: int = 0  # 0: every signature without a rule of its own

    def __post_init__(self) -> None:
        if self.type not in (LIMIT, THRESHOLD, BOTH):
            raise ValueError(f"threshold type must be limit, threshold or both, not {self.type!r}")
        if self.track not in TRACKS:
            raise ValueError(f"threshold track must be one of {', '.join(TRACKS)}, not {self.track!r}")
        if self.count < 1 or self.seconds < 1:
            raise ValueError("threshold count and seconds must be at least 1")


def default_rules(count: int = 1, seconds: int = 60, sids: dict[str, int] | None = None) -> list[ThresholdRule]:
    """Scans are tracked by scanner; floods, reflections and other anomalies by victim.

    ``sids`` maps anomaly kinds to the signature ids alerts of that kind carry.
    """
    sids = sids or {kind: sig.sid for kind, sig in DEFAULT_SIGNATURES.items()}
    return [
        ThresholdRule(LIMIT, "by_dst", count, seconds, sids["flood"]),
        ThresholdRule(LIMIT, "by_src", count, seconds, sids["scan"]),
        ThresholdRule(LIMIT, "by_dst", count, seconds, sids["reflection"]),
        ThresholdRule(LIMIT, "by_dst", count, seconds, 0),
    ]


@dataclass
class _State:
    start: int
    hits: int = 0
    emitted: int = 0
    folded: int = 0  # suppressed since the last emitted alert


@dataclass
class Thresholder:
    """Decides, per second, which alert candidates become alerts.

    Works on arrays, before any alert record exists: a spoofed flood yields tens
    of thousands of anomalous windows a second, and only the few that survive
    thresholding are worth formatting.
    """

    rules: list[ThresholdRule] = field(default_factory=default_rules)
    max_per_second: int = 100
    corroborate: int = 0
    suppressed: int = 0
    emitted: int = 0
    _state: dict[tuple[int, str, bytes | None], _State] = field(default_factory=dict)
    _anomalous: dict[bytes, int] = field(default_factory=dict)  # destination → newest anomalous packets' second
    _second: int = -1
    _in_second: int = 0

    def _corroborated(self, dst: np.ndarray, lone: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Which candidates may alert: those of several flows, and lone ones whose destination
        was anomalous in packets of a second before ``seen`` (within ``corroborate``); then
        remember each destination's newest anomalous second."""
        keys = [d.tobytes() for d in dst]
        newest = seen.tolist()
        ok = ~lone
        for i in np.flatnonzero(lone).tolist():
            last = self._anomalous.get(keys[i])
            ok[i] = last is not None and 0 < newest[i] - last <= self.corroborate
        for key, at in zip(keys, newest, strict=True):
            if at > self._anomalous.get(key, at - 1):
                self._anomalous[key] = at
        return ok

    def _rule(self, sid: int) -> ThresholdRule | None:
        exact = [r for r in self.rules if r.sid == sid]
        return exact[0] if exact else next((r for r in self.rules if r.sid == 0), None)

    def decide(
        self,
        sec: int,
        sids: np.ndarray,
        src: np.ndarray,
        dst: np.ndarray,
        lone: np.ndarray | None = None,
        seen: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates of second ``sec``, in order: signature ids, (N, 16) source/destination
        addresses, which are lone flows (None: none) and the second of the newest packets each
        shows (None: ``sec``).  Returns which to emit, and for each the number of earlier
        alerts of its key it stands for (suppressed since that key's last emitted alert)."""
        if sec != self._second:
            self._second, self._in_second = sec, 0
            # Forget expired keys so state stays bounded by the active ones.
            if len(self._state) > 100_000:
                self._state = {k: v for k, v in self._state.items() if sec - v.start < 3600}
            if len(self._anomalous) > 100_000:
                self._anomalous = {k: t for k, t in self._anomalous.items() if sec - t <= self.corroborate}
        n = len(sids)
        keep = np.zeros(n, dtype=bool)
        folded = np.zeros(n, dtype=np.int64)
        owner: dict[int, _State] = {}  # kept candidate → its key's state
        considered = np.ones(n, dtype=bool)
        if self.corroborate and lone is not None:
            considered = self._corroborated(dst, lone, np.full(n, sec, np.int64) if seen is None else seen)
        for sid in np.unique(sids[considered]).tolist():
            idx = np.flatnonzero((sids == sid) & considered)
            rule = self._rule(sid)
            if rule is None:
                keep[idx] = True
                continue
            for key, members in _groups(rule.track, src[idx], dst[idx], idx):
                st = self._state.get((sid, rule.track, key))
                if st is None or sec - st.start >= rule.seconds:
                    st = self._state[(sid, rule.track, key)] = _State(sec, folded=st.folded if st else 0)
                pos = _passing(rule, st.hits, st.emitted, len(members))
                st.hits += len(members)
                if len(pos) == 0:
                    st.folded += len(members)
                    continue
                kept = members[pos]
                keep[kept] = True
                # Each emitted alert stands for the candidates suppressed since the one before.
                gaps = np.diff(pos, prepend=-1) - 1
                gaps[0] += st.folded
                folded[kept] = gaps
                st.folded = len(members) - 1 - int(pos[-1])
                st.emitted += len(kept)
                owner.update(dict.fromkeys(kept.tolist(), st))
        chosen = np.flatnonzero(keep)
        room = max(self.max_per_second - self._in_second, 0)
        if len(chosen) > room:
            # The per-second safety valve: the cut alerts' counts go back to their keys,
            # to be reported on each key's next emitted alert.
            for i in chosen[room:].tolist():
                owner[i].folded += int(folded[i]) + 1
            keep[chosen[room:]] = False
            folded[chosen[room:]] = 0
        k = int(keep.sum())
        self._in_second += k
        self.emitted += k
        self.suppressed += n - k
        return keep, folded


def _passing(rule: ThresholdRule, hits: int, emitted: int, m: int) -> np.ndarray:
    """Positions among ``m`` new matches of one key that the rule lets through."""
    if rule.type == LIMIT:
        return np.arange(max(0, min(m, rule.count - emitted)))
    if rule.type == THRESHOLD:
        j = np.arange(1, m + 1)
        return np.flatnonzero((hits + j) % rule.count == 0)
    if emitted == 0 and hits + m >= rule.count:  # BOTH: once per period, after count matches
        return np.array([max(rule.count - hits, 1) - 1])
    return np.zeros(0, dtype=np.int64)


def _groups(track: str, src: np.ndarray, dst: np.ndarray, idx: np.ndarray) -> Iterator[tuple[bytes | None, np.ndarray]]:
    """(key, candidate indices in order) for each tracked key among the candidates."""
    if track == "by_rule":
        yield None, idx
        return
    cols = {"by_src": src, "by_dst": dst}.get(track)
    if cols is None:
        cols = np.concatenate([src, dst], axis=1)
    rows = np.ascontiguousarray(cols).view(f"V{cols.shape[1]}").ravel()
    uniq, inv = np.unique(rows, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0, True])
    for g, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        yield uniq[g].tobytes(), idx[order[a:b]]
