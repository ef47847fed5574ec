"""Synthetic anomalies: the generic shapes behind header-visible attacks, drawn at random.

A supervised head trained on a dozen real families learns those families.  What a new
family shares with them is its *shape* in the headers: one source reaching many
destinations or ports that rarely answer (a scan of any tool), many sources converging
on one destination (a flood of any protocol), answers arriving from many service ports
that nobody asked (a reflection of any protocol).  This module writes captures of those
three shapes with every free parameter drawn from wide ranges — protocol, flags, rate,
duration, fan-out pattern, answered share, spoofed or botnet sources, sizes, service port
— so that what a model learns from them is the shape, not one tool's fingerprint.  A
fourth, ``synth-malformed``, is the shape of packets no ordinary stack sends (tiny,
overlapping and oversized fragments, IP options, impossible TCP flags) from one attacker or
spoofed sources: what fragmentation attacks, stealth scans and decoder-evasion tools of any
kind have in common.  The corpus injects them like real attack captures (families
``synth-*``, never evaluated on: evaluation holds out the real families).

Packets are Ethernet + IPv4 + TCP/UDP/ICMP headers (the sensor reads headers only); the
wire length carries the payload size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .inject import _write_pcap
from .labels import NS

SYNTHETIC = ("synth-fanin", "synth-fanout", "synth-replies", "synth-malformed", "synth-point", "synth-beacon")
MAX_PACKETS = 40_000  # per capture: rate × duration is cut to this
T0 = 1_600_000_000  # s; inject moves every instance to its slot anyway
_ETH = bytes.fromhex("0200000000020200000000010800")
_SERVICE_PORTS = (53, 123, 19, 161, 389, 1900, 11211, 17, 3702, 443, 80)
_TCP_SYN, _TCP_ACK, _TCP_RST, _TCP_SYNACK, _TCP_RSTACK = 0x02, 0x10, 0x04, 0x12, 0x14
_TCP_PSHACK, _TCP_FINACK = 0x18, 0x11

# t (ns), src, dst, proto, sport, dport, flags/type, payload, IP extras: the header's flags and
# fragment-offset field in the low 16 bits, words of IP options above them.
Packet = tuple[int, int, int, int, int, int, int, int, int]
_MF = 0x2000


def _ip_sum(hdr: bytes) -> int:
    s: int = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    return ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF


def _frame(p: Packet, ident: int, ttl: int) -> tuple[bytes, int]:
    """(captured frame, wire length) of one packet."""
    _, src, dst, proto, sport, dport, flags, payload, extra = p
    frag, words = extra & 0xFFFF, extra >> 16
    options = b"\x01" * (4 * words - 1) + b"\x00" if words else b""  # NOPs, then end of options
    if frag & 0x1FFF:  # a non-first fragment: payload only, no transport header
        l4 = b""
    elif proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, ident * 7919 & 0xFFFFFFFF, 0, 0x50, flags, 64240, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8 + payload, 0)
    else:  # ICMP: flags is the type (8 echo request, 3 unreachable), code 3 for unreachable
        l4 = struct.pack("!BBHHH", flags, 3 if flags == 3 else 0, 0, ident & 0xFFFF, 1)
    head = 20 + len(options)
    total = head + len(l4) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | head // 4, 0, min(total, 65535), ident & 0xFFFF, frag, ttl, proto, 0, _v4(src), _v4(dst)
    )
    ip += options
    ip = ip[:10] + struct.pack("!H", _ip_sum(ip)) + ip[12:]
    return _ETH + ip + l4, 14 + total


def _v4(a: int) -> bytes:
    return int(a).to_bytes(4, "big")


def _times(rng: np.random.Generator, rate: float, seconds: float) -> np.ndarray:
    """Poisson arrivals at ``rate`` over ``seconds``, at most MAX_PACKETS, in ns from T0."""
    n = int(min(max(rate * seconds, 20), MAX_PACKETS))
    gaps = rng.exponential(1.0 / rate, n)
    return T0 * NS + (np.cumsum(gaps) * NS).astype(np.int64)  # int: float64 ns at 1.6e18 step by 256


def _hosts(rng: np.random.Generator, n: int, prefix_len: int) -> np.ndarray:
    """n random addresses inside one random prefix of length ``prefix_len`` (unicast space)."""
    base = int(rng.integers(0x0B000000, 0xDF000000)) & ~((1 << (32 - prefix_len)) - 1)
    return base + rng.integers(1, max(2, 1 << (32 - prefix_len)) - 1, n)


def fanout(rng: np.random.Generator) -> list[Packet]:
    """One source probing many destinations and/or ports; few answers (RST, ICMP unreachable, SYN-ACK)."""
    rate = float(np.exp(rng.uniform(np.log(5), np.log(3000))))
    t = _times(rng, rate, rng.uniform(10, 40))
    scanner = int(_hosts(rng, 1, 8)[0])
    mode = rng.choice(["hosts", "ports", "both"])
    proto = int(rng.choice([6, 6, 6, 17, 1]))
    n = len(t)
    hosts = _hosts(rng, n, int(rng.integers(16, 25))) if mode != "ports" else np.full(n, _hosts(rng, 1, 24)[0])
    if mode == "hosts":
        ports = np.full(n, rng.choice([22, 23, 80, 443, 445, 3389, 8080, 5060, int(rng.integers(1, 65535))]))
    else:
        ports = rng.permutation(65535)[:n] + 1 if n < 65535 else rng.integers(1, 65536, n)
    sport = rng.integers(1024, 65536, n) if rng.random() < 0.5 else np.full(n, rng.integers(1024, 65536))
    answered = rng.uniform(0.0, 0.3)
    rtt = int(rng.uniform(1, 200) * 1e6)
    out: list[Packet] = []
    for i in range(n):
        ti, h, dp, sp = int(t[i]), int(hosts[i]), int(ports[i]), int(sport[i])
        back = rng.random() < answered
        if proto == 6:
            out.append((ti, scanner, h, 6, sp, dp, _TCP_SYN, 0, 0))
            if back:
                out.append((ti + rtt, h, scanner, 6, dp, sp, _TCP_RSTACK if rng.random() < 0.7 else _TCP_SYNACK, 0, 0))
        elif proto == 17:
            out.append((ti, scanner, h, 17, sp, dp, 0, int(rng.integers(0, 64)), 0))
            if back:
                out.append((ti + rtt, h, scanner, 1, 0, 0, 3, 28, 0))
        else:
            out.append((ti, scanner, h, 1, 0, 0, 8, int(rng.integers(0, 56)), 0))
            if back:
                out.append((ti + rtt, h, scanner, 1, 0, 0, 0, 0, 0))
    return out


def fanin(rng: np.random.Generator) -> list[Packet]:
    """Many sources (spoofed at random, or a botnet) converging on one destination."""
    rate = float(np.exp(rng.uniform(np.log(100), np.log(20000))))
    t = _times(rng, rate, rng.uniform(5, 30))
    n = len(t)
    victim = int(_hosts(rng, 1, 24)[0])
    spoofed = rng.random() < 0.5
    bots = _hosts(rng, int(rng.integers(20, 500)), 8)
    srcs = rng.integers(0x01000000, 0xDF000000, n) if spoofed else rng.choice(bots, n)
    proto = int(rng.choice([6, 6, 17, 1]))
    flags = int(rng.choice([_TCP_SYN, _TCP_SYN, _TCP_ACK, _TCP_RST, _TCP_PSHACK]))
    dport = int(rng.choice([80, 443, 53, 25565, 27015, 22, int(rng.integers(1, 65535))]))
    size = int(rng.choice([0, 0, int(rng.integers(1, 1400))]))
    sports = rng.integers(1024, 65536, n)
    dports = rng.integers(1, 65536, n) if rng.random() < 0.3 else np.full(n, dport)
    kind = 8 if proto == 1 else flags
    return [(int(t[i]), int(srcs[i]), victim, proto, int(sports[i]), int(dports[i]), kind, size, 0) for i in range(n)]


def replies(rng: np.random.Generator) -> list[Packet]:
    """Answers from many reflectors' service ports to one victim that never asked."""
    rate = float(np.exp(rng.uniform(np.log(100), np.log(10000))))
    t = _times(rng, rate, rng.uniform(5, 30))
    n = len(t)
    victim = int(_hosts(rng, 1, 24)[0])
    reflectors = rng.choice(_hosts(rng, int(rng.integers(20, 3000)), int(rng.integers(8, 17))), n)
    service = int(rng.choice(_SERVICE_PORTS))
    tcp = service in (443, 80)
    vport = rng.integers(1024, 65536, n) if rng.random() < 0.6 else np.full(n, rng.integers(1, 65536))
    size = int(rng.integers(100, 1460))
    if tcp:
        return [(int(t[i]), int(reflectors[i]), victim, 6, service, int(vport[i]), _TCP_SYNACK, 0, 0) for i in range(n)]
    return [(int(t[i]), int(reflectors[i]), victim, 17, service, int(vport[i]), 0, size, 0) for i in range(n)]


_BAD_FLAGS = (0x00, 0x29, 0x03, 0x01, 0x07, 0x3F, 0x06, 0x21)  # null, Xmas, SYN-FIN, FIN, ..., URG-FIN
_MALFORMED_KINDS = ("tiny-fragments", "overlapping-fragments", "oversized-fragments", "tcp-flags", "options")


def _malformed_burst(rng: np.random.Generator, kind: str, t: int, src: int, dst: int) -> list[Packet]:
    """The packets of one malformed exchange of ``kind`` from ``src`` to ``dst`` at ``t``."""
    proto = int(rng.choice([6, 17, 1]))
    sport, dport = int(rng.integers(1024, 65536)), int(rng.integers(1, 65536))
    flags = _TCP_SYN if proto == 6 else 8
    if kind == "tcp-flags":
        return [(t, src, dst, 6, sport, dport, int(rng.choice(_BAD_FLAGS)), 0, 0)]
    if kind == "options":
        return [(t, src, dst, proto, sport, dport, flags, int(rng.integers(0, 200)), int(rng.integers(1, 11)) << 16)]
    step = int(rng.integers(50_000, 5_000_000))  # ns between the fragments of one datagram
    if kind == "oversized-fragments":  # a datagram whose last fragment ends past 65,535 bytes
        n = int(rng.integers(1, 6))
        out = [(t + i * step, src, dst, proto, sport, dport, flags, 1472, _MF | (i * 185)) for i in range(n)]
        return [*out, (t + n * step, src, dst, proto, sport, dport, flags, int(rng.integers(100, 1400)), 8150)]
    first = int(rng.integers(0, 40)) // 8 * 8  # payload bytes of a tiny first fragment
    if kind == "tiny-fragments":
        rest = int(rng.integers(1, 20)) * 8
        off = ((20 if proto == 6 else 8) + first) // 8
        return [
            (t, src, dst, proto, sport, dport, flags, first, _MF),
            (t + step, src, dst, proto, sport, dport, flags, rest, off),
        ]
    # overlapping: the second fragment starts inside the first (teardrop, bonk, their kin)
    size = int(rng.integers(2, 40)) * 8
    off = int(rng.integers(0, max(1, (size + 8) // 8)))
    return [
        (t, src, dst, proto, sport, dport, flags, size, _MF),
        (t + step, src, dst, proto, sport, dport, flags, int(rng.integers(1, 40)), off),
    ]


def malformed(rng: np.random.Generator) -> list[Packet]:
    """One attacker's malformed packets (one or two kinds), to one victim or many.

    One host is in every packet, so the labels name it: the attacker, or the victim when
    the sources are spoofed.
    """
    rate = float(np.exp(rng.uniform(np.log(2), np.log(3000))))
    t = _times(rng, rate, rng.uniform(5, 40))
    kinds = rng.choice(_MALFORMED_KINDS, size=int(rng.integers(1, 3)), replace=False)
    attacker = int(_hosts(rng, 1, 8)[0])
    spoofed = rng.random() < 0.3
    many = not spoofed and rng.random() < 0.5
    victims = _hosts(rng, int(rng.integers(2, 200)) if many else 1, int(rng.integers(16, 25)))
    out: list[Packet] = []
    for ti in t.tolist():
        src = int(rng.integers(0x01000000, 0xDF000000)) if spoofed else attacker
        out += _malformed_burst(rng, str(rng.choice(kinds)), int(ti), src, int(rng.choice(victims)))
    return out


def point_flood(rng: np.random.Generator) -> list[Packet]:
    """One source flooding one destination — a host, its LAN's broadcast or a multicast
    group — over one to four flows, at a rate no conversation of its kind keeps up: a
    point-to-point DoS or an alpha flow of any protocol, the target answering a little or
    not at all."""
    rate = float(np.exp(rng.uniform(np.log(200), np.log(20000))))
    t = _times(rng, rate, float(np.exp(rng.uniform(np.log(0.05), np.log(20)))))
    n = len(t)
    src = int(_hosts(rng, 1, 8)[0])
    target = rng.choice(["host", "host", "host", "broadcast", "multicast"])
    if target == "broadcast":
        dst = 0xFFFFFFFF
    elif target == "multicast":
        dst = 0xE0000000 + int(rng.integers(1, 1 << 24))
    else:
        dst = int(_hosts(rng, 1, 24)[0])
    proto = int(rng.choice([6, 17, 17, 1]))
    flags = int(rng.choice([_TCP_SYN, _TCP_ACK, _TCP_PSHACK, _TCP_RST])) if proto == 6 else 8
    dport = int(rng.choice([53, 67, 20000, 502, 139, 80, int(rng.integers(1, 65536))]))
    sports = rng.choice(rng.integers(1024, 65536, int(rng.integers(1, 5))), n)
    size = int(rng.choice([0, int(rng.integers(1, 1400))]))
    answered = rng.uniform(0.0, 0.3) if target == "host" else 0.0
    out: list[Packet] = []
    for i in range(n):
        ti, sp = int(t[i]), int(sports[i])
        out.append((ti, src, dst, proto, sp, dport, flags, size, 0))
        if rng.random() < answered:
            back = _TCP_RSTACK if proto == 6 else (3 if proto == 17 else 0)
            out.append(
                (ti + 100_000, dst, src, proto if proto != 17 else 1, dport, sp, back, 0 if proto != 17 else 28, 0)
            )
    return out


def _near(rng: np.random.Generator, size: int) -> int:
    """A payload within 10% of ``size``."""
    return int(size * rng.uniform(0.9, 1.1))


def beacon(rng: np.random.Generator) -> list[Packet]:
    """One host calling one server back every period, a little jittered, with requests and
    answers of nearly one size: the shape of C&C check-ins, implants and miners of any kind —
    ordinary in every second, regular over a minute."""
    period = float(np.exp(rng.uniform(np.log(0.5), np.log(8))))
    jitter = rng.uniform(0.0, 0.2)
    client, server = int(_hosts(rng, 1, 16)[0]), int(_hosts(rng, 1, 8)[0])
    tcp = rng.random() < 0.7
    dport = int(rng.choice([443, 80, 8080, 8443, 4444, 53, int(rng.integers(1, 65536))]))
    ask, answer = int(rng.integers(20, 600)), int(rng.integers(0, 1400))
    exchanges = int(rng.integers(1, 4))
    rtt = int(rng.uniform(5, 200) * 1e6)
    sport = int(rng.integers(1024, 60000))
    out: list[Packet] = []
    t = T0 * NS
    for call in range(int(60 / period)):
        t += int(period * (1 + rng.uniform(-jitter, jitter)) * NS)
        sp = sport + call  # a new connection each call, from the next ephemeral port
        if tcp:
            out += [
                (t, client, server, 6, sp, dport, _TCP_SYN, 0, 0),
                (t + rtt, server, client, 6, dport, sp, _TCP_SYNACK, 0, 0),
            ]
            for k in range(exchanges):
                u = t + (2 + 2 * k) * rtt
                out += [
                    (u, client, server, 6, sp, dport, _TCP_PSHACK, _near(rng, ask), 0),
                    (u + rtt, server, client, 6, dport, sp, _TCP_PSHACK, _near(rng, answer), 0),
                ]
            u = t + (3 + 2 * exchanges) * rtt
            out += [
                (u, client, server, 6, sp, dport, _TCP_FINACK, 0, 0),
                (u + rtt, server, client, 6, dport, sp, _TCP_FINACK, 0, 0),
            ]
        else:
            for k in range(exchanges):
                u = t + 2 * k * rtt
                out += [
                    (u, client, server, 17, sp, dport, 0, _near(rng, ask), 0),
                    (u + rtt, server, client, 17, dport, sp, 0, _near(rng, answer), 0),
                ]
    return out


_MTU_PAYLOAD = 1480  # IP payload bytes of a fragment cut at a 1,500-byte MTU (a multiple of 8)
_FRAGMENTING_PORTS = (53, 443, 500, 4500, 2049, 1812, 161, 514, 1194, 5353)


def _datagram(t: int, src: int, dst: int, sport: int, dport: int, size: int, step: int) -> list[Packet]:
    """One UDP datagram of ``size`` payload bytes as a stack sends it: whole when it fits the
    MTU, else cut at the MTU into fragments ``step`` ns apart (the first carries the header)."""
    if size + 8 <= _MTU_PAYLOAD:
        return [(t, src, dst, 17, sport, dport, 0, size, 0)]
    out: list[Packet] = []
    left, off = size + 8, 0  # the UDP header travels in the first fragment's payload
    while left > 0:
        piece = min(left, _MTU_PAYLOAD)
        more = _MF if left > piece else 0
        payload = piece - 8 if off == 0 else piece
        out.append((t + len(out) * step, src, dst, 17, sport, dport, 0, payload, more | off // 8))
        left, off = left - piece, off + piece
    return out


def benign_fragments(rng: np.random.Generator) -> list[Packet]:
    """Ordinary UDP conversations whose large datagrams are fragmented at the MTU: DNS answers
    with EDNS(0) buffers beyond the MTU, padded or certificate-carrying requests (DNSCrypt,
    IKE, RADIUS EAP-TLS), NFS and syslog over UDP, a VPN with a large MTU.  One client and one
    to a dozen servers; the large datagrams go to the client, from it, or both ways, at the
    rate of a conversation, each query on a port of its own or all on one.  Benign: the
    corpus mixes these into backgrounds without labels (``CorpusConfig.benign_synthetic``).
    """
    rate = float(np.exp(rng.uniform(np.log(0.1), np.log(30))))
    t = _times(rng, rate, rng.uniform(20, 120))
    client = int(_hosts(rng, 1, 16)[0])
    servers = _hosts(rng, int(rng.choice([1, 1, 1, 2, 3, 5, 8, 12])), int(rng.integers(8, 25)))
    dport = int(rng.choice([*_FRAGMENTING_PORTS, int(rng.integers(1024, 65536))]))
    large = rng.choice(["answers", "requests", "both"])
    big = (int(rng.integers(1500, 4000)), int(rng.integers(4000, 9000)))
    small = int(rng.integers(20, 300))
    fixed_port = int(rng.integers(1024, 65536)) if rng.random() < 0.4 else 0
    rtt = int(rng.uniform(1, 150) * 1e6)
    step = int(rng.uniform(5, 200) * 1e3)  # a stack sends a datagram's fragments back to back
    out: list[Packet] = []
    for ti in t.tolist():
        server = int(rng.choice(servers))
        sport = fixed_port or int(rng.integers(1024, 65536))
        ask = int(rng.integers(*big)) if large != "answers" else _near(rng, small)
        answer = int(rng.integers(*big)) if large != "requests" else _near(rng, small)
        out += _datagram(int(ti), client, server, sport, dport, ask, step)
        out += _datagram(int(ti) + rtt, server, client, dport, sport, answer, step)
    return out


GENERATORS: dict[str, Callable[[np.random.Generator], list[Packet]]] = {
    "synth-fanin": fanin,
    "synth-fanout": fanout,
    "synth-replies": replies,
    "synth-malformed": malformed,
    "synth-point": point_flood,
    "synth-beacon": beacon,
    "benign-fragments": benign_fragments,
}
# Shapes of benign traffic that the public networks hardly show, mixed into backgrounds unlabelled.
BENIGN_SYNTHETIC = ("benign-fragments",)


def write_capture(family: str, path: Path, seed: int) -> int:
    """Write one random capture of ``family`` to ``path``; its packet count."""
    rng = np.random.default_rng(seed)
    pkts = sorted(GENERATORS[family](rng), key=lambda p: p[0])[:MAX_PACKETS]
    ts = np.array([p[0] for p in pkts], dtype=np.int64)
    ttl = int(rng.integers(32, 129))
    frames, wire = [], []
    ids = _datagram_ids(pkts) if family in BENIGN_SYNTHETIC else range(len(pkts))
    for i, p in zip(ids, pkts, strict=True):
        fr, w = _frame(p, i, ttl)
        frames.append(fr)
        wire.append(w)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_pcap(str(path), ts, np.array(wire, dtype=np.int64), frames)
    return len(pkts)


def _datagram_ids(pkts: list[Packet]) -> list[int]:
    """IP identifications as a stack numbers them: one per datagram, shared by its fragments (a
    non-first fragment takes its host pair's last one).  (The attack shapes number every packet
    on its own, so their fragments do not pair; they stay as they are, the corpus they shape
    being fixed by its seed.)"""
    last: dict[tuple[int, int], int] = {}
    ids = []
    for i, p in enumerate(pkts):
        pair = (p[1], p[2])
        ident = last.get(pair, i) if p[8] & 0x1FFF else i
        last[pair] = ident
        ids.append(ident)
    return ids
