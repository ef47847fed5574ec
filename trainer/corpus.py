"""``flowlstm-train corpus``: reproducible training and evaluation traces from real captures.

From the public captures of ``shared/data`` (``MANIFEST.md``, ``MANIFEST-more.md``) the
recipe builds, deterministically for a seed:

- **site backgrounds**: the benign captures of one source (IoT device setups, nDPI
  application traces, Zeek traces, book captures) merged into one trace of
  ``site_seconds``: each capture's long idle gaps squeezed (captures spanning days are
  mostly silence), its private IPv4 hosts remapped onto addresses of its own inside the
  site's 10.S.0.0/16 (so two captures' 192.168.1.2 stay two hosts), and its start placed at
  random in the site's time, so many devices and applications run concurrently;
- the **MAWI** excerpt as the backbone background, as it is;
- **mixes**: every attack family injected into every background with ``inject`` — each
  mix one background and one family, several instances of it at spread offsets, each at a
  rate drawn from ``RATES`` and with its own address remapping — labelled in MAWILab
  format (CSV and admd XML);
- with ``benign_synthetic``, every background once more with benign shapes the public networks
  hardly show (``synth.BENIGN_SYNTHETIC``: fragmented UDP conversations) mixed in, unlabelled;
- with ``alone``, every attack capture as a trace of its own as well (source and background
  ``alone``): the attack on a link with no past, as a sensor started during one, or given a
  capture of one, meets it;
- ``corpus.json``: every trace with its source, site, family, and per injected instance the
  capture, time bounds, key host and role (the labels' filter) and every host it involves
  (the evaluation's ground truth for alerts).

Families and sources are recorded so that training can leave one out and evaluation can
use only what training never saw: attack families (``FAMILIES``) and benign sources
(``benign/<source>`` directories, ``mawi``).  Generated data stays out of git; the recipe
is this module and ``scripts/build-corpus.sh``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sensor.addresses import format_address
from sensor.capture.files import CaptureReader
from sensor.errors import FlowlstmError, UsageError
from sensor.flows import ANOMALY_NAMES, header_anomalies

from .inject import (
    AttackSpec,
    _ipv4s_of,
    _is_local,
    _read,
    _remap_frame,
    _write_pcap,
    inject,
    is_group,
    write_labels,
)
from .labels import NS
from .synth import BENIGN_SYNTHETIC, SYNTHETIC, write_capture

log = logging.getLogger("flowlstm.corpus")

CORPUS_VERSION = 1
# Attack directories of shared/data and the family each belongs to; the StopDDoS and probing
# captures of MANIFEST.md are filed by what they are.
FAMILY_OF = {
    "attacks/c2-beacon-simulated": "c2-beacon",
    "attacks/cryptomining": "cryptomining",
    "attacks/dhcp-flood": "dhcp-flood",
    "attacks/dns-anomaly": "dns-anomaly",
    "attacks/dns-tunnel": "dns-tunnel",
    "attacks/dos": "dos",
    "attacks/ics-flood": "ics-flood",
    "attacks/ipv6-attack": "ipv6-attack",
    "attacks/malware-c2": "malware-c2",
    "attacks/scan": "scan",
    "attacks/probing": "scan",
    "attacks/synflood": "synflood",
    "attacks/stopddos/pkt.TCP.synflood.spoofed.pcap": "synflood",
    "attacks/stopddos/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng": "synflood",
    "attacks/stopddos/amp.TCP.reflection.SYNACK.pcap": "reflection",
    "attacks/stopddos/amp.dns.RRSIG.fragmented.pcap": "amplification",
    "attacks/teardrop": "teardrop",
}
FAMILIES = tuple(sorted(set(FAMILY_OF.values())))
RATES = (0.5, 1.0, 2.0, 4.0)  # replay speeds an instance is drawn from
MAWI = "mawi/201911211400_headers.pcap"
_CAPTURE_NAME = re.compile(r"\.(pcap|pcapng|cap)(\.(gz|xz|bz2))?$")


@dataclass(frozen=True)
class CorpusConfig:
    """What the recipe builds; the defaults are the shipped model's corpus."""

    seed: int = 1
    site_seconds: float = 300.0  # length of a site background
    max_gap: float = 5.0  # idle gaps longer than this are squeezed to it (s)
    attack_seconds: float = 60.0  # an attack capture is cut to this much of its (squeezed) time
    spread_pps: float = 2000.0  # packets of a capture recorded in one instant are spread at this rate
    sites: dict[str, int] = field(
        default_factory=lambda: {"iot-sentinel": 3, "ndpi-apps": 4, "zeek-misc": 1, "ppa-book": 1}
    )
    instance_spacing: float = 30.0  # one attack instance per this many seconds of background
    max_instances: int = 6  # per mix
    families: tuple[str, ...] = FAMILIES
    # sources whose captures are benign traces as they are (too few or too short for a site)
    standalone: tuple[str, ...] = ("caida-netshare", "netshare-test")
    # more benign sources from outside the data directory: name → directory of captures (a
    # site's own traffic); each needs an entry in ``sites``
    extra: dict[str, str] = field(default_factory=dict)
    max_captures: int = 0  # per site (0: all); small corpora for tests
    synthetic: int = 6  # random captures per synthetic family (``trainer/synth.py``); 0: none
    # random captures per benign synthetic shape (``synth.BENIGN_SYNTHETIC``), mixed unlabelled
    # into every background; 0: none
    benign_synthetic: int = 0
    # every attack capture also as a trace of its own (``alone_trace``); off: on a network held out
    # for validation they added false alerts in both seeds, detection in one (docs/detection.md)
    alone: bool = False


@dataclass(frozen=True)
class Capture:
    """One capture of shared/data: path relative to the data directory, and its group."""

    rel: str
    group: str  # benign source, or attack family


def _family(rel: str) -> str | None:
    for prefix in sorted(FAMILY_OF, key=len, reverse=True):
        if rel == prefix or rel.startswith(prefix + "/"):
            return FAMILY_OF[prefix]
    return None


def find_captures(data: Path) -> tuple[dict[str, list[Capture]], dict[str, list[Capture]]]:
    """(benign captures by source, attack captures by family) found under ``data``."""
    if not data.is_dir():
        raise UsageError(f"{data}: no such data directory (expected shared/data with MANIFEST.md)")
    benign: dict[str, list[Capture]] = {}
    attacks: dict[str, list[Capture]] = {}
    for p in sorted(data.rglob("*")):
        if not p.is_file() or not _CAPTURE_NAME.search(p.name):
            continue
        rel = p.relative_to(data).as_posix()
        if rel.startswith("benign/"):
            source = rel.split("/")[1]
            benign.setdefault(source, []).append(Capture(rel, source))
        elif (fam := _family(rel)) is not None:
            attacks.setdefault(fam, []).append(Capture(rel, fam))
    if not attacks:
        raise UsageError(f"{data}: no attacks/ captures found; is this shared/data?")
    return benign, attacks


@dataclass
class Packets:
    """A capture's packets as ``inject`` handles them: ns times, wire lengths, Ethernet frames."""

    ts: np.ndarray
    wire: np.ndarray
    frames: list[bytes]
    l3: np.ndarray

    def take(self, idx: np.ndarray) -> Packets:
        return Packets(self.ts[idx], self.wire[idx], [self.frames[i] for i in idx.tolist()], self.l3[idx])


def read(path: Path) -> Packets:
    """Every packet of a capture, in time order."""
    ts, wire, frames, l3 = _read(str(path))
    p = Packets(ts, wire, frames, l3)
    order = np.argsort(ts, kind="stable")
    return p if bool((order == np.arange(len(order))).all()) else p.take(order)


def squeeze(ts: np.ndarray, max_gap: float, spread_pps: float) -> np.ndarray:
    """Times starting at 0 with every gap over ``max_gap`` shortened to it; a capture recorded
    in one instant (all times equal: a generated flood) is spread at ``spread_pps``."""
    if len(ts) == 0:
        return ts.astype(np.int64)
    if len(ts) > 1 and int(ts[-1] - ts[0]) == 0:
        return (np.arange(len(ts)) * (NS / spread_pps)).astype(np.int64)
    gaps = np.diff(ts.astype(np.int64), prepend=ts[0])
    gaps = np.minimum(gaps, int(max_gap * NS))
    return np.cumsum(gaps)


@dataclass(frozen=True)
class HostCounts:
    """Packets per source and per destination address of a capture (IPv4 and IPv6): of all
    its IP packets, and of the odd ones, those no ordinary stack sends (bad fragments,
    impossible TCP flags: ``sensor.flows.header_anomalies``)."""

    src: Counter[str]
    dst: Counter[str]
    odd_src: Counter[str]
    odd_dst: Counter[str]
    packets: int


_BAD_FRAG, _BAD_TCP = ANOMALY_NAMES.index("bad_frag"), ANOMALY_NAMES.index("bad_tcp")


def addresses(path: Path) -> HostCounts:
    """The host counts of a capture, in one pass over its packets."""
    src: Counter[str] = Counter()
    dst: Counter[str] = Counter()
    odd_src: Counter[str] = Counter()
    odd_dst: Counter[str] = Counter()
    packets = 0
    for batch in CaptureReader(str(path)):
        ip = batch[batch["l3"] != 0]
        packets += len(ip)
        flags = header_anomalies(ip)
        odd = ip[(flags[:, _BAD_FRAG] + flags[:, _BAD_TCP]) > 0] if flags is not None else ip[:0]
        for part, pair in ((ip, (src, dst)), (odd, (odd_src, odd_dst))):
            for col, counter in zip(("src", "dst"), pair, strict=True):
                values, counts = np.unique(part[col], axis=0, return_counts=True)
                for v, n in zip(values, counts.tolist(), strict=True):
                    counter[format_address(v)] += n
    return HostCounts(src, dst, odd_src, odd_dst, packets)


def key_host(src: Counter[str], dst: Counter[str]) -> tuple[str, str]:
    """The host in most of an attack's packets, and its role: "src" (an attacker, a scanner,
    a beaconing host) or "dst" (the victim of a flood or a reflection).

    A tunnel or a beacon has two hosts in every packet; of hosts within 10% of the most
    packets, a private (lab) one is taken — the client, not the public resolver or server
    that other traffic uses too.
    """
    total = src + dst
    if not total:
        raise UsageError("an attack capture without IP packets cannot be labelled")
    top = max(total.values())
    close = sorted(h for h, n in total.items() if n >= 0.9 * top)
    # A flood to the broadcast or a group has the group in every packet; the host sending it is the key.
    ips = {h: ipaddress.ip_address(h) for h in close}
    host = max(close, key=lambda h: (not is_group(ips[h]), not ips[h].is_global, total[h]))
    return host, ("src" if src[host] >= dst[host] else "dst")


# Below this share of a capture's packets, its busiest host is one of many unrelated hosts
# doing the same thing (Zeek's DHCP flood: 250 Inform/ACK exchanges among 500 addresses).
DISTRIBUTED_SHARE = 0.1


def ground_truth(counts: HostCounts) -> tuple[tuple[str, ...], str]:
    """The hosts whose packets are the attack, and their role (the labels' filter).

    Where a capture has odd packets, they are the attack, and its key is the host in most
    of them: teardrop's capture is two overlapping fragments amid the lab host's DNS and
    pings, and its busiest host is that innocent one. Where no host is in a tenth of the
    packets, every source is a key. Otherwise the key host (``key_host``).
    """
    if counts.odd_src:
        host, role = key_host(counts.odd_src, counts.odd_dst)
        return (host,), role
    host, role = key_host(counts.src, counts.dst)
    if (counts.src + counts.dst)[host] < DISTRIBUTED_SHARE * counts.packets:
        return tuple(sorted(counts.src)), "src"
    return (host,), role


def _site_address(site: int, capture: int, host: int) -> bytes:
    """A capture's private host number ``host`` inside site ``site``: 10.(16+site).x.y, unique per capture."""
    n = capture * 256 + host + 1
    return bytes((10, 16 + site, (n >> 8) & 0xFF, n & 0xFF))


@dataclass
class Trace:
    """One trace of the corpus, as corpus.json lists it."""

    name: str
    path: str  # relative to the corpus directory, or absolute for a shared/data file used as is
    kind: str  # "benign" or "mix"
    source: str  # benign source of the background: mawi, iot-sentinel, ...
    background: str  # name of the background trace
    packets: int
    seconds: float
    family: str | None = None
    labels: list[str] = field(default_factory=list)
    captures: list[str] = field(default_factory=list)  # what a site was built from
    attacks: list[dict[str, Any]] = field(default_factory=list)


def _loopback(frames: list[bytes], l3: np.ndarray) -> np.ndarray:
    """Per frame: whether its IPv4 (127/8) or IPv6 (::1) source or destination is a loopback address."""
    out = np.zeros(len(frames), dtype=bool)
    for i, (f, o) in enumerate(zip(frames, l3.tolist(), strict=True)):
        if len(f) >= o + 20 and f[o] >> 4 == 4:
            out[i] = f[o + 12] == 127 or f[o + 16] == 127
        elif len(f) >= o + 40 and f[o] >> 4 == 6:
            out[i] = f[o + 8 : o + 24] == _V6_LOOPBACK or f[o + 24 : o + 40] == _V6_LOOPBACK
    return out


_V6_LOOPBACK = bytes(15) + b"\x01"


def build_site(
    caps: list[Capture], data: Path, site: int, name: str, out: Path, cfg: CorpusConfig, rng: np.random.Generator
) -> Trace:
    """Merge benign captures into one site background (see the module docstring)."""
    t_base = (1_700_000_000 + 86_400 * site) * NS
    length = int(cfg.site_seconds * NS)
    parts: list[Packets] = []
    used: list[str] = []
    for c_idx, cap in enumerate(caps):
        try:
            p = read(data / cap.rel)
        except FlowlstmError as exc:
            log.warning("site %s: %s left out: %s", name, cap.rel, exc)
            continue
        # A host's loopback traffic never crosses a network (Zeek's test traces are often
        # recorded on lo); remapped onto site addresses it would look like land packets.
        p = p.take(np.flatnonzero(~_loopback(p.frames, p.l3)))
        if len(p.ts) == 0:
            continue
        t = squeeze(p.ts, cfg.max_gap, cfg.spread_pps)
        keep = np.flatnonzero(t <= length)
        p, t = p.take(keep), t[keep]
        span = int(t[-1]) if len(t) else 0
        start = int(rng.integers(0, max(length - span, 0) + 1))
        p.ts = t_base + start + t
        local = sorted({a for pair in _ipv4s_of(p.frames, p.l3) for a in pair if a and _is_local(a)})
        mapping = {a: _site_address(site, c_idx, k) for k, a in enumerate(local)}
        p.frames = [_remap_frame(f, o, mapping) for f, o in zip(p.frames, p.l3.tolist(), strict=True)]
        parts.append(p)
        used.append(cap.rel)
    if not parts:
        raise UsageError(f"site {name}: none of its {len(caps)} captures could be read")
    ts = np.concatenate([p.ts for p in parts])
    wire = np.concatenate([p.wire for p in parts])
    frames = [f for p in parts for f in p.frames]
    order = np.argsort(ts, kind="stable")
    path = out / "backgrounds" / f"{name}.pcap"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_pcap(str(path), ts[order], wire[order], [frames[i] for i in order.tolist()])
    source = caps[0].group
    return Trace(
        name,
        path.relative_to(out).as_posix(),
        "benign",
        source,
        name,
        len(ts),
        round(float(ts.max() - ts.min()) / NS, 3),
        captures=used,
    )


@dataclass(frozen=True)
class PreparedAttack:
    """An attack capture squeezed, spread and cut for injection, with its ground truth."""

    capture: str  # path in shared/data
    family: str
    path: Path  # the prepared pcap
    seconds: float
    keys: tuple[str, ...]  # the labels' filter: these hosts in ``role``
    role: str
    hosts: tuple[str, ...]
    packets: int
    bounds: tuple[int, int]  # first and last packet time (ns)


def prepare_attack(cap: Capture, data: Path, out: Path, cfg: CorpusConfig) -> PreparedAttack | None:
    """The attack capture as injected: gaps squeezed, instants spread, cut to ``attack_seconds``."""
    try:
        p = read(data / cap.rel)
    except FlowlstmError as exc:
        log.warning("attack %s left out: %s", cap.rel, exc)
        return None
    t = squeeze(p.ts, cfg.max_gap, cfg.spread_pps)
    keep = np.flatnonzero(t <= int(cfg.attack_seconds * NS))
    p = p.take(keep)
    p.ts = 1_600_000_000 * NS + t[keep]
    # x.pcapng and x.pcap are two captures (Pcaphunt has both forms of a sweep): one file each
    stem = _CAPTURE_NAME.sub(
        lambda m: "" if m.group(0) == ".pcap" else m.group(0).replace(".", "-"), Path(cap.rel).name
    )
    path = out / "attacks" / cap.group / f"{stem}.pcap"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_pcap(str(path), p.ts, p.wire, p.frames)
    counts = addresses(path)
    if not counts.packets:
        log.warning("attack %s left out: no IP packets", cap.rel)
        return None
    keys, role = ground_truth(counts)
    hosts = tuple(sorted(counts.src.keys() | counts.dst.keys()))
    return PreparedAttack(
        cap.rel,
        cap.group,
        path,
        float(p.ts[-1] - p.ts[0]) / NS,
        keys,
        role,
        hosts,
        len(p.ts),
        (int(p.ts[0]), int(p.ts[-1])),
    )


ALONE = "alone"  # source and background of the traces that are an attack capture alone


def alone_trace(a: PreparedAttack, out: Path) -> Trace:
    """The prepared attack capture as a trace of its own, labelled like its instances in mixes.

    A mix starts every attack on a link already running, so its model learns attacks whose
    link deviates from a warm baseline.  A sensor started during an attack, or handed a
    capture of one, has a baseline as young as the attack: the deviations read 0, and a 2-s
    zmap scan alone scored 0.970 against a threshold of 0.9966.  These traces are that case,
    for every family.
    """
    name = f"{a.family}--{ALONE}--{a.path.stem}"
    csv = out / ALONE / f"{name}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    xml = csv.with_suffix(".xml")
    first, last = a.bounds
    label = {"id": 0, "taxonomy": a.family, "role": a.role, "addresses": list(a.keys), "from": first, "to": last}
    write_labels(csv, xml, [label])
    instance = {
        "capture": a.capture,
        "family": a.family,
        "offset": 0.0,
        "rate": 1.0,
        "from_ns": first,
        "to_ns": last,
        "packets": a.packets,
        "role": a.role,
        "key": a.keys[0],
        "hosts": list(a.hosts),
    }
    return Trace(
        name,
        a.path.relative_to(out).as_posix(),
        "mix",
        ALONE,
        ALONE,
        a.packets,
        round(a.seconds, 3),
        family=a.family,
        labels=[csv.relative_to(out).as_posix(), xml.relative_to(out).as_posix()],
        attacks=[instance],
    )


def _remap_hosts(hosts: Iterable[str], remapped: dict[str, str]) -> list[str]:
    return sorted({remapped.get(h, h) for h in hosts})


def build_mix(
    background: Trace,
    bg_path: Path,
    family: str,
    attacks: list[PreparedAttack],
    out: Path,
    cfg: CorpusConfig,
    rng: np.random.Generator,
) -> Trace:
    """One background with several instances of one family (see the module docstring)."""
    n = max(1, min(cfg.max_instances, int(background.seconds // cfg.instance_spacing), len(attacks)))
    picks = [attacks[i] for i in rng.permutation(len(attacks))[:n].tolist()]
    slot = background.seconds / n
    specs = []
    for j, a in enumerate(picks):
        rate = float(rng.choice(RATES))
        offset = j * slot + float(rng.uniform(0, max(slot - min(a.seconds / rate, slot), 0) * 0.8))
        specs.append(AttackSpec(str(a.path), round(offset, 3), rate, family, a.role, a.keys))
    name = f"{family}--{background.name}"
    pcap = out / "mixes" / f"{name}.pcap"
    pcap.parent.mkdir(parents=True, exist_ok=True)
    csv, xml = pcap.with_suffix(".csv"), pcap.with_suffix(".xml")
    pool = "global" if background.source == "mawi" else "any"
    seed = int(rng.integers(1 << 31))
    summary = inject(str(bg_path), specs, str(pcap), str(csv), str(xml), seed=seed, pool=pool, clip=True)
    instances = []
    for a, spec, got in zip(picks, specs, summary["injected"], strict=True):
        instances.append(
            {
                "capture": a.capture,
                "family": family,
                "offset": spec.offset,
                "rate": spec.rate,
                "from_ns": got["from"],
                "to_ns": got["to"],
                "packets": got["packets"],
                "role": a.role,
                "key": got["addresses"][0],
                "hosts": _remap_hosts(a.hosts, got["remapped"]),
            }
        )
    return Trace(
        name,
        pcap.relative_to(out).as_posix(),
        "mix",
        background.source,
        background.name,
        summary["packets"],
        background.seconds,
        family=family,
        labels=[csv.relative_to(out).as_posix(), xml.relative_to(out).as_posix()],
        attacks=instances,
    )


def synthetic_captures(
    shape: str, n: int, rng: np.random.Generator, data: Path, out: Path, cfg: CorpusConfig
) -> list[PreparedAttack]:
    """``n`` random captures of a synthetic ``shape`` (``trainer/synth.py``), prepared for injection."""
    got = []
    for i in range(n):
        path = out / "synthetic" / shape / f"{shape}-{i + 1}.pcap"
        write_capture(shape, path, int(rng.integers(1 << 31)))
        if a := prepare_attack(Capture(str(path.resolve()), shape), data, out, cfg):
            got.append(a)
    return got


def benign_mix(mix: Trace, out: Path) -> Trace:
    """``mix`` (of a benign synthetic shape) as benign traffic: no labels, no instances, so every
    window of it is benign and no evaluation counts it (its family is held out by none)."""
    for rel in mix.labels:
        (out / rel).unlink()
    return dataclasses.replace(mix, labels=[], attacks=[])


def site_captures(directory: Path, source: str) -> list[Capture]:
    """Every capture file under ``directory`` (a site's own benign traffic), by absolute path."""
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory of captures")
    caps = [
        Capture(str(p.resolve()), source)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and _CAPTURE_NAME.search(p.name)
    ]
    if not caps:
        raise UsageError(f"{directory}: no capture files (*.pcap, *.pcapng, *.cap, optionally .gz/.xz/.bz2)")
    return caps


def families_in(data: Path) -> tuple[str, ...]:
    """The attack families that have captures under ``data``."""
    return tuple(f for f in FAMILIES if f in find_captures(data)[1])


def build(data: Path, out: Path, cfg: CorpusConfig, say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Build the corpus under ``out``; return (and write) its corpus.json."""
    benign, attack_caps = find_captures(data)
    for source, directory in cfg.extra.items():
        if source in benign:
            raise UsageError(f"source name {source} is taken by {data}/benign/{source}; name the site otherwise")
        benign[source] = site_captures(Path(directory), source)
    if not benign:
        raise UsageError(f"{data}: no benign/ captures found, and no site given; is this shared/data?")
    unknown = set(cfg.families) - set(FAMILIES)
    if unknown:
        raise UsageError(f"unknown attack family {', '.join(sorted(unknown))}; known: {', '.join(FAMILIES)}")
    missing = [s for s in cfg.sites if s not in benign]
    if missing:
        raise UsageError(f"{data}: no benign/{missing[0]}/ captures; sources found: {', '.join(sorted(benign))}")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    traces: list[Trace] = []
    if (data / MAWI).is_file():
        p = read(data / MAWI)
        traces.append(
            Trace(
                "mawi",
                str((data / MAWI).resolve()),
                "benign",
                "mawi",
                "mawi",
                len(p.ts),
                round(float(p.ts[-1] - p.ts[0]) / NS, 3),
                captures=[MAWI],
            )
        )
    site_no = 0
    for source, n_sites in cfg.sites.items():
        caps = [benign[source][i] for i in rng.permutation(len(benign[source])).tolist()]
        for k in range(n_sites):
            group = caps[k::n_sites]
            if cfg.max_captures:
                group = group[: cfg.max_captures]
            name = f"site-{source}-{k + 1}"
            say(f"site {name}: merging {len(group)} captures")
            traces.append(build_site(group, data, site_no, name, out, cfg, rng))
            site_no += 1
    backgrounds = list(traces)
    for source, caps in sorted(benign.items()):
        if source in cfg.sites:
            continue
        if source not in cfg.standalone:
            say(f"benign/{source}: not used (neither a site nor standalone)")
            continue
        for cap in caps:
            p = read(data / cap.rel)
            name = f"{source}-{_CAPTURE_NAME.sub('', Path(cap.rel).name)}"
            traces.append(
                Trace(
                    name,
                    str((data / cap.rel).resolve()),
                    "benign",
                    source,
                    name,
                    len(p.ts),
                    round(float(p.ts[-1] - p.ts[0]) / NS, 3),
                    captures=[cap.rel],
                )
            )
    prepared: dict[str, list[PreparedAttack]] = {}
    for family in cfg.families:
        got = [a for cap in attack_caps.get(family, []) if (a := prepare_attack(cap, data, out, cfg))]
        if not got:
            raise UsageError(f"family {family}: none of its captures could be prepared")
        prepared[family] = got
        say(f"family {family}: {len(got)} captures")
    for bg in backgrounds:
        bg_path = Path(bg.path) if os.path.isabs(bg.path) else out / bg.path
        for family in cfg.families:
            traces.append(build_mix(bg, bg_path, family, prepared[family], out, cfg, rng))
        say(f"background {bg.name}: {len(cfg.families)} mixes")
    # Synthetic families from a stream of their own, so the real mixes are the same with or without them.
    synth_rng = np.random.default_rng([cfg.seed, 1])
    synth_families = SYNTHETIC if cfg.synthetic else ()
    for family in synth_families:
        prepared[family] = synthetic_captures(family, cfg.synthetic, synth_rng, data, out, cfg)
        say(f"family {family}: {len(prepared[family])} synthetic captures")
    for bg in backgrounds if synth_families else []:
        bg_path = Path(bg.path) if os.path.isabs(bg.path) else out / bg.path
        for family in synth_families:
            traces.append(build_mix(bg, bg_path, family, prepared[family], out, cfg, synth_rng))
    # Benign shapes from a third stream, so that every other trace is the same with or without them.
    benign_rng = np.random.default_rng([cfg.seed, 2])
    for shape in BENIGN_SYNTHETIC if cfg.benign_synthetic else ():
        got = synthetic_captures(shape, cfg.benign_synthetic, benign_rng, data, out, cfg)
        say(f"benign {shape}: {len(got)} synthetic captures")
        for bg in backgrounds:
            bg_path = Path(bg.path) if os.path.isabs(bg.path) else out / bg.path
            traces.append(benign_mix(build_mix(bg, bg_path, shape, got, out, cfg, benign_rng), out))
    if cfg.alone:
        traces += [alone_trace(a, out) for family in (*cfg.families, *synth_families) for a in prepared[family]]
        say(f"{sum(len(prepared[f]) for f in (*cfg.families, *synth_families))} attack captures as traces of their own")
    corpus = {
        "version": CORPUS_VERSION,
        "config": dataclasses.asdict(cfg),
        "data": str(data.resolve()),
        "families": [*cfg.families, *synth_families],
        "sources": sorted({t.source for t in traces}),
        "traces": [dataclasses.asdict(t) for t in traces],
    }
    (out / "corpus.json").write_text(json.dumps(corpus, indent=1) + "\n")
    return corpus


def load(corpus_dir: Path) -> dict[str, Any]:
    """A corpus.json, its trace paths made absolute."""
    path = corpus_dir / "corpus.json"
    try:
        corpus: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no corpus here; build one with 'flowlstm-train corpus'") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable: {exc}") from None
    if corpus.get("version") != CORPUS_VERSION:
        raise UsageError(f"{path}: corpus version {corpus.get('version')!r}, this trainer reads {CORPUS_VERSION}")
    for t in corpus["traces"]:
        t["path"] = str(corpus_dir / t["path"]) if not os.path.isabs(t["path"]) else t["path"]
        t["labels"] = [str(corpus_dir / p) for p in t["labels"]]
    return corpus
