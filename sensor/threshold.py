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
silently.  ``max_per_second`` caps all alerts of one second as a safety valve.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


def default_rules(count: int = 1, seconds: int = 60) -> list[ThresholdRule]:
    """Scans are tracked by scanner; floods, reflections and other anomalies by victim."""
    return [
        ThresholdRule(LIMIT, "by_dst", count, seconds, 9330001),
        ThresholdRule(LIMIT, "by_src", count, seconds, 9330002),
        ThresholdRule(LIMIT, "by_dst", count, seconds, 9330003),
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
    rules: list[ThresholdRule] = field(default_factory=default_rules)
    max_per_second: int = 100
    suppressed: int = 0
    emitted: int = 0
    _state: dict = field(default_factory=dict)
    _second: int = -1
    _in_second: int = 0

    def _rule(self, sid: int) -> ThresholdRule | None:
        exact = [r for r in self.rules if r.sid == sid]
        return exact[0] if exact else next((r for r in self.rules if r.sid == 0), None)

    def filter(self, records: list[dict], sec: int) -> list[dict]:
        """Keep the alerts of second ``sec`` the rules allow; count the rest."""
        if sec != self._second:
            self._second, self._in_second = sec, 0
            # Forget expired keys so state stays bounded by the active ones.
            if len(self._state) > 100_000:
                self._state = {k: v for k, v in self._state.items() if sec - v.start < 3600}
        out = []
        for rec in records:
            sid = rec["alert"]["signature_id"]
            rule = self._rule(sid)
            keep = True
            if rule is not None:
                key = (sid, rule.track, _track_key(rec, rule.track))
                st = self._state.get(key)
                if st is None or sec - st.start >= rule.seconds:
                    folded = st.folded if st else 0
                    st = self._state[key] = _State(sec, folded=folded)
                st.hits += 1
                if rule.type == LIMIT:
                    keep = st.emitted < rule.count
                elif rule.type == THRESHOLD:
                    keep = st.hits % rule.count == 0
                else:
                    keep = st.hits >= rule.count and st.emitted == 0
                if keep:
                    st.emitted += 1
                    if st.folded:
                        rec["alert"]["metadata"]["flowlstm_suppressed"] = [str(st.folded)]
                        st.folded = 0
                else:
                    st.folded += 1
            if keep and self._in_second >= self.max_per_second:
                keep = False
            if keep:
                self._in_second += 1
                self.emitted += 1
                out.append(rec)
            else:
                self.suppressed += 1
        return out


def _track_key(rec: dict, track: str):
    if track == "by_src":
        return rec["src_ip"]
    if track == "by_dst":
        return rec["dest_ip"]
    if track == "by_both":
        return rec["src_ip"], rec["dest_ip"]
    return None
