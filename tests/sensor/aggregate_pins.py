"""Aggregation outputs pinned from the pure-Python lattice search, to check its C successor.

``python -m tests.sensor.aggregate_pins`` writes ``tests/data/aggregate/pinned.txt.gz``:
for every second of every bundled IP capture under a few configurations, a digest of
``second_lines``: the totals, each aggregate in rank order (prefixes, bytes, packets) with
its protocol/port entries, and the pair → aggregate table (the lines themselves would
take 3.6 MB). The file in the repository was written by the pure-Python search of
commit 34cc826 (numpy recursion over groups), which ``sensor/aggregate/_lattice.c``
replaced; the test compares the C search with it.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sensor.aggregate import AggregateConfig, AggregateSet, aggregate_second
from sensor.capture import read_packets
from sensor.flows import NS

from ..conftest import DATA

PINNED = DATA / "aggregate" / "pinned.txt.gz"

# The bundled captures hold 15 IPv6 packets in all: this one is the MAWI excerpt with about
# half its packets moved into IPv6 (see ``_to_ipv6``), so both families share each second.
MIXED6 = "mawi/201911211400_headers.pcap+ipv6"

# Every capture with IP traffic (the link-type samples carry almost none and are covered elsewhere).
CAPTURES = [
    "mawi/201911211400_headers.pcap",
    "attacks/amp.TCP.reflection.SYNACK.pcap",
    "attacks/amp.dns.RRSIG.fragmented.pcap",
    "attacks/hping3.pcapng",
    "attacks/nmap.pcapng",
    "attacks/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng",
    "attacks/pkt.TCP.synflood.spoofed.pcap",
    "attacks/zmap_tcp_5k.pcapng",
    "zeek/ftp_bruteforce.pcap",
    "zeek/ssh_sshguess.pcap",
    MIXED6,
]

# The default with and without protocol breakdowns (the pipeline runs without), then the
# other criteria with thresholds that take the search deeper and shallower; "packet" also
# takes a protocol threshold that is not a whole multiple of the address one.
CONFIGS = {
    "default": AggregateConfig(),
    "default-noproto": AggregateConfig(protocols=False),
    "byte-0.005": AggregateConfig(address_threshold=0.005, protocol_threshold=0.02, criterion="byte"),
    "packet-0.05": AggregateConfig(address_threshold=0.05, protocol_threshold=0.12, criterion="packet"),
}


def _to_ipv6(p: np.ndarray) -> np.ndarray:
    """Packets whose address pair has an even sum of last bytes, moved into IPv6.

    a.b.c.d becomes 2001:db8:aabb:cc00:(d ^ a)00:0:0:dd (hex bytes), so /64s hold many
    hosts (the interface identifier the search never splits) and prefixes share the
    excerpt's structure on both sides of the /64.
    """
    p = p.copy()
    six = (p["l3"] == 4) & ((p["src"][:, 15].astype(int) + p["dst"][:, 15]) % 2 == 0)
    for col in ("src", "dst"):
        v4 = p[col][six, 12:].copy()
        a = np.zeros((len(v4), 16), dtype=np.uint8)
        a[:, :4] = (0x20, 0x01, 0x0D, 0xB8)
        a[:, 4:7] = v4[:, :3]
        a[:, 8] = v4[:, 3] ^ v4[:, 0]
        a[:, 15] = v4[:, 3]
        p[col][six] = a
    p["l3"][six] = 6
    return p


def capture_seconds(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(epoch second, its packets in time order) for every second of a capture with packets."""
    derived = path.name.endswith("+ipv6")
    p = np.concatenate(list(read_packets(str(path.with_name(path.name.removesuffix("+ipv6"))))))
    if derived:
        p = _to_ipv6(p)
    p = p[np.argsort(p["ts"], kind="stable")]
    sec = p["ts"] // NS
    cuts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1], True])
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        yield int(sec[a]), p[a:b]


def second_lines(sec: int, agg: AggregateSet) -> list[str]:
    """One second's aggregation as text: totals, then each aggregate in rank order with its
    protocol/port entries (the lines starting with a space), then its pair → aggregate table."""
    inputs = " ".join(f"{f}:{n}" for f, n in sorted(agg.input_flows.items()))
    out = [f"s {sec} {agg.total_bytes} {agg.total_packets} {inputs}"]
    for a in agg.aggregates:
        out.append(f"{a.label()} {a.bytes} {a.packets}")
        # The shares are left out: Python computes them from these counts.
        out += [
            f" {p.proto} {p.sport} {p.sport_len} {p.dport} {p.dport_len} {p.bytes} {p.packets}" for p in a.protocols
        ]
    table = agg.pair_keys.astype("<u8").tobytes() + agg.pair_aggregate.astype("<i8").tobytes()
    out.append(f"t {hashlib.sha256(table).hexdigest()}")
    return out


def second_digest(lines: list[str]) -> str:
    """32 bits of a second's lines: enough to see any change, small enough to pin 20k seconds."""
    return hashlib.sha256("\n".join(lines).encode("ascii")).hexdigest()[:8]


def read_pinned() -> dict[tuple[str, str], list[str]]:
    """The pinned per-second digests, by (capture, configuration name)."""
    cases: dict[tuple[str, str], list[str]] = {}
    digests: list[str] = []
    with gzip.open(PINNED, "rt", encoding="ascii") as fh:
        for line in fh.read().splitlines():
            if line.startswith("# "):
                capture, name = line[2:].split()
                digests = cases[(capture, name)] = []
            else:
                digests.append(line)
    return cases


def main() -> None:
    PINNED.parent.mkdir(exist_ok=True)
    text = []
    for capture in CAPTURES:
        for name, config in CONFIGS.items():
            text.append(f"# {capture} {name}")
            text += [
                second_digest(second_lines(sec, aggregate_second(p, config)))
                for sec, p in capture_seconds(DATA / capture)
            ]
    # mtime=0: the same outputs give the same file.
    with open(PINNED, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(("\n".join(text) + "\n").encode("ascii"))


if __name__ == "__main__":
    main()
