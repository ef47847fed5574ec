"""What names a window's flow across mixes, and which corpus traces train and which test.

The splits of windows themselves (by time, by family) run in Spark: ``trainer/frame.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from sensor.addresses import parse_addresses
from sensor.errors import UsageError
from sensor.hashing import endpoint_order, mix64


def flow_identity(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """A uint64 per window row naming its flow by 5-tuple and first packet time, not by the
    trace's flow id: the same background flow in the background and in each of its mixes has
    one identity (inject keeps the background's packets and times), so a false-alert budget
    counts it once, not once per mix; flows of different backgrounds never share one."""
    cols = {c: table.column(c).to_numpy(zero_copy_only=False)[rows] for c in ("src", "dst", "sport", "dport", "proto")}
    addrs = {c: parse_addresses(cols[c]) for c in ("src", "dst")}
    h, _ = endpoint_order(addrs["src"], addrs["dst"], cols["sport"], cols["dport"], cols["proto"])
    out: np.ndarray = mix64(h, table.column("start_ts").to_numpy()[rows].astype(np.uint64))
    return out


@dataclass(frozen=True)
class CorpusSplit:
    """Which corpus traces train and which test, and the families and sources each side has."""

    train: frozenset[str]
    test: frozenset[str]
    families: tuple[str, ...]  # attack families trained on
    sources: tuple[str, ...]  # benign sources trained on
    held_out_families: tuple[str, ...]
    held_out_sources: tuple[str, ...]
    calibrate: frozenset[str] = frozenset()  # traces that only set the thresholds
    calibration_sources: tuple[str, ...] = ()


def corpus_split(
    corpus: dict[str, Any],
    families: Iterable[str] = (),
    sources: Iterable[str] = (),
    calibration: Iterable[str] = (),
) -> CorpusSplit:
    """Hold out attack ``families`` and benign ``sources`` of a corpus (``trainer/corpus.py``),
    and keep the ``calibration`` sources for the thresholds alone.

    Training gets the mixes of every other family on backgrounds of every other source, and
    the benign traces of those sources.  Testing gets the mixes of the held-out families on
    held-out backgrounds (all families, or all backgrounds, where nothing of that kind is
    held out) and the benign traces of the held-out sources.  Calibration gets the benign
    traces of its sources and their mixes of the trained families: no model learns from
    them, so the scores their benign flows get are those of a network the models never saw.
    What is none of these — a held-out family on a training or calibration background, say —
    is used by no side.
    """
    hf, hs, hc = set(families), set(sources), set(calibration)
    unknown = (hf - set(corpus["families"])) | ((hs | hc) - set(corpus["sources"]))
    if unknown:
        raise UsageError(f"not in the corpus: {', '.join(sorted(unknown))}")
    if hs & hc:
        raise UsageError(f"both held out and calibrated on: {', '.join(sorted(hs & hc))}")
    train: set[str] = set()
    test: set[str] = set()
    calibrate: set[str] = set()
    for t in corpus["traces"]:
        seen_src = t["source"] not in hs
        fit = calibrate if t["source"] in hc else train
        if t["kind"] == "benign":
            (fit if seen_src else test).add(t["name"])
        elif seen_src and t["family"] not in hf:
            fit.add(t["name"])
        elif (not hf or t["family"] in hf) and (not hs or not seen_src) and t["source"] not in hc:
            test.add(t["name"])
    fams = tuple(f for f in corpus["families"] if f not in hf)
    srcs = tuple(x for x in corpus["sources"] if x not in hs | hc)
    return CorpusSplit(
        frozenset(train),
        frozenset(test),
        fams,
        srcs,
        tuple(sorted(hf)),
        tuple(sorted(hs)),
        frozenset(calibrate),
        tuple(sorted(hc)),
    )
