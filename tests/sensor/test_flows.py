"""Flow stage against tshark's own flow accounting on real captures."""

from __future__ import annotations

import subprocess
from collections import Counter

import numpy as np
import pytest

from sensor.addresses import format_addresses
from sensor.capture import read_packets
from sensor.capture.records import PACKET_DTYPE, TCP_ACK, TCP_SYN
from sensor.flows import ANOMALY_NAMES, NS, FlowConfig, FlowTable, header_anomalies

from ..conftest import ATTACKS, DATA, MAWI_PCAP
from . import pcaptools, reference
from .flowseconds import load, run_seconds

NO_TIMEOUT = FlowConfig(idle_timeout=1e7, active_timeout=1e8)


def flow_totals(rows: np.ndarray, proto: int) -> dict:
    """flow_id → (unordered endpoint pair, frames, wire bytes), summed over seconds."""
    rows = rows[rows["proto"] == proto]
    ids, first, inv = np.unique(rows["flow_id"], return_index=True, return_inverse=True)
    frames = np.bincount(inv, rows["pkts_fwd"].astype(float) + rows["pkts_rev"]).astype(int)
    nbytes = np.bincount(inv, rows["bytes_fwd"].astype(float) + rows["bytes_rev"]).astype(int)
    src = format_addresses(rows["src"][first])
    dst = format_addresses(rows["dst"][first])
    out = Counter()
    for i in range(len(ids)):
        r = rows[first[i]]
        key = frozenset([(src[i], int(r["sport"])), (dst[i], int(r["dport"]))])
        out[(key, int(frames[i]), int(nbytes[i]))] += 1
    return out


def tshark_stream_totals(path, proto: str) -> Counter:
    """Per 5-tuple: endpoints, frames and frame bytes, as tshark dissects them.

    tshark's stream index also splits a 5-tuple when TCP sequence numbers show
    port reuse (the SYN-ACK reflection capture); a flow here is the 5-tuple
    within the idle timeout, so streams of one 5-tuple are summed.  Fragments are
    dissected one by one; each counts in its datagram's flow, found by source,
    destination and IP identification as tshark reads them, within the second.
    """
    num = {"tcp": 6, "udp": 17}[proto]
    fields = ["frame.time_epoch", "ip.src", "ipv6.src", f"{proto}.srcport", "ip.dst", "ipv6.dst", f"{proto}.dstport"]
    fields += ["frame.len", "ip.id", "ipv6.fraghdr.ident"]
    out = subprocess.run(
        [
            "tshark",
            "-o",
            "ip.defragment:FALSE",
            "-o",
            "ipv6.defragment:FALSE",
            "-r",
            str(path),
            "-Y",
            f"({proto} || (ip.frag_offset > 0 && ip.proto == {num}) || ipv6.fraghdr.nxt == {num}) && !icmp && !icmpv6",
            "-T",
            "fields",
            *(a for f in fields for a in ("-e", f)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packets = []
    for line in out.splitlines():
        t, s4, s6, sp, d4, d6, dp, ln, id4, id6 = line.split("\t")
        s, d = s4 or s6, d4 or d6
        if "," in s + d:
            continue  # a tunnelled packet: its flow here is the outer header's
        packets.append([s, d, int(sp or 0), int(dp or 0), int(ln), (int(t.split(".")[0]), s, d, id4 or id6)])
    # A fragment without ports takes those of its datagram's first fragment in the same second:
    # the latest before it, else the earliest after it.
    firsts: dict[tuple, list[int]] = {}
    for i, (_, _, sp, dp, _, datagram) in enumerate(packets):
        if sp or dp:
            firsts.setdefault(datagram, []).append(i)
    for i, pk in enumerate(packets):
        if not (pk[2] or pk[3]) and pk[5] in firsts:
            cands = firsts[pk[5]]
            j = max((c for c in cands if c < i), default=min(cands))
            pk[2], pk[3] = packets[j][2], packets[j][3]
    streams: dict[frozenset, list] = {}
    for s, d, sp, dp, ln, _ in packets:
        key = frozenset([(s, sp), (d, dp)])
        st = streams.setdefault(key, [key, 0, 0])
        st[1] += 1
        st[2] += ln
    return Counter((k, f, b) for k, f, b in streams.values())


@pytest.mark.parametrize(
    "path,proto,num",
    [
        (MAWI_PCAP, "tcp", 6),
        (DATA / "zeek" / "ssh_sshguess.pcap", "tcp", 6),
        (DATA / "zeek" / "ftp_bruteforce.pcap", "tcp", 6),
        (ATTACKS / "amp.TCP.reflection.SYNACK.pcap", "tcp", 6),
        (ATTACKS / "amp.dns.RRSIG.fragmented.pcap", "udp", 17),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
@pytest.mark.slow
def test_flow_totals_equal_tshark(path, proto, num):
    """Every flow's frames and bytes equal tshark's for the same endpoints.

    tshark's conversation table (-z conv,tcp) drops packets whose TCP options a
    snaplen cut off (its tap runs only after a whole header), so -T fields is the
    reference that covers the MAWI excerpt too; test_conversations_* compare
    with conv,tcp / conv,udp on the captures with whole headers.
    """
    packets = load(path)
    ours = flow_totals(run_seconds(FlowTable(NO_TIMEOUT), packets), num)
    ref = tshark_stream_totals(path, proto)
    assert sum(ours.values()) == sum(ref.values())
    assert ours == ref


def test_initiator_is_the_syn_sender():
    packets = load(DATA / "zeek" / "ftp_bruteforce.pcap")
    rows = run_seconds(FlowTable(NO_TIMEOUT), packets)
    syn = packets[(packets["proto"] == 6) & ((packets["tcp_flags"] & (TCP_SYN | TCP_ACK)) == TCP_SYN)]
    syn_src = set(zip(format_addresses(syn["src"]), syn["sport"].tolist(), strict=True))
    starts = rows[rows["new"] == 1]
    inits = set(zip(format_addresses(starts["src"]), starts["sport"].tolist(), strict=True))
    assert syn_src and syn_src <= inits


def _pkt(ts_s: float, src: int, dst: int, sport: int, dport: int, proto: int = 6) -> np.ndarray:
    p = np.zeros(1, PACKET_DTYPE)
    p["ts"] = int(ts_s * NS)
    for field, v in (("src", src), ("dst", dst)):
        p[field][0, 10:12] = 0xFF
        p[field][0, 12:] = np.frombuffer(v.to_bytes(4, "big"), np.uint8)
    p["sport"], p["dport"], p["proto"], p["l3"] = sport, dport, proto, 4
    p["wire_len"] = p["ip_len"] = 60
    return p


def test_idle_timeout_starts_a_new_flow():
    t = FlowTable(FlowConfig(idle_timeout=10, active_timeout=1000))
    a = t.update(_pkt(100.2, 1, 2, 1000, 80), 100)
    b = t.update(_pkt(105.5, 2, 1, 80, 1000), 105)  # reply within the timeout: same flow
    c = t.update(_pkt(200.0, 1, 2, 1000, 80), 200)  # after 94.5 s of silence: new flow
    assert a["flow_id"][0] == b["flow_id"][0] != c["flow_id"][0]
    assert (b["pkts_fwd"][0], b["pkts_rev"][0]) == (0, 1)
    assert c["new"][0] == 1 and t.counters.expired_idle == 1


def test_active_timeout_splits_long_flows():
    t = FlowTable(FlowConfig(idle_timeout=10, active_timeout=20))
    ids = [t.update(_pkt(s + 0.5, 1, 2, 1, 2), s)["flow_id"][0] for s in range(0, 55, 5)]
    assert len(set(ids)) == 3 and t.counters.expired_active == 2


def test_cap_evicts_oldest_idle_and_counts():
    packets = load(ATTACKS / "pkt.TCP.synflood.spoofed.pcap")
    t = FlowTable(FlowConfig(max_flows=500))
    rows = run_seconds(t, packets)
    assert len(t) <= 500
    assert t.counters.evicted > 0
    assert t.counters.created == len(np.unique(rows["flow_id"]))
    c = t.counters
    assert c.created - (c.expired_idle + c.expired_active + c.evicted) == len(t)


def test_second_statistics_match_packets():
    """Per-flow-second sums, extremes and IATs recomputed naively from the packets."""
    packets = load(DATA / "zeek" / "ssh_sshguess.pcap")
    rows = run_seconds(FlowTable(NO_TIMEOUT), packets)
    r = rows[np.argmax(rows["pkts_fwd"] + rows["pkts_rev"])]
    sec = packets["ts"] // NS
    fwd = (
        (format_addresses(packets["src"]) == format_addresses(r["src"][None])[0])
        & (packets["sport"] == r["sport"])
        & (packets["dport"] == r["dport"])
    )
    rev = (
        (format_addresses(packets["src"]) == format_addresses(r["dst"][None])[0])
        & (packets["sport"] == r["dport"])
        & (packets["dport"] == r["sport"])
    )
    inflow = fwd | rev
    mine = inflow & (sec == r["sec"])
    assert r["pkts_fwd"] == np.count_nonzero(fwd & mine)
    assert r["pkts_rev"] == np.count_nonzero(rev & mine)
    assert r["bytes_fwd"] == packets["wire_len"][fwd & mine].sum()
    assert r["len_max"] == packets["ip_len"][mine].max()
    assert r["len_min"] == packets["ip_len"][mine].min()
    ts = packets["ts"][inflow]
    iat = np.diff(ts)[(ts[1:] // NS) == r["sec"]] / NS
    assert r["iat_max"] == pytest.approx(iat.max(), rel=1e-6)
    assert r["iat_mean"] == pytest.approx(iat.mean(), rel=1e-5)
    assert r["n_syn"] == np.count_nonzero(packets["tcp_flags"][mine] & TCP_SYN)


@pytest.mark.slow
@pytest.mark.parametrize("path", [MAWI_PCAP, ATTACKS / "nmap.pcapng"], ids=lambda v: v.name)
def test_every_flow_second_matches_a_plain_group_by(path):
    """Every statistic of every flow-second against a per-row Python recomputation (no reduceat, no C)."""
    packets = load(path)
    packets = packets[packets["l3"] != 0]
    rows = run_seconds(FlowTable(NO_TIMEOUT), packets)

    def ends(a, pa, b, pb):
        return tuple(sorted([(bytes(a), int(pa)), (bytes(b), int(pb))]))

    anomalies = header_anomalies(packets)
    assert anomalies is not None or path == MAWI_PCAP
    groups: dict = {}
    members: dict = {}  # (second, flow key) → its packets' indices
    first: dict = {}  # flow key → its first packet
    for i, pk in enumerate(packets):
        flow = (ends(pk["src"], pk["sport"], pk["dst"], pk["dport"]), int(pk["proto"]))
        groups.setdefault((int(pk["ts"] // NS), *flow), []).append(pk)
        members.setdefault((int(pk["ts"] // NS), *flow), []).append(i)
        first.setdefault(flow, pk)
    assert len(groups) == len(rows)
    icmp_rows = 0
    for r in rows:
        icmp = int(r["proto"]) in (1, 58)
        ports = (0, 0) if icmp else (r["sport"], r["dport"])  # ICMP is keyed without type and code
        flow = (ends(r["src"], ports[0], r["dst"], ports[1]), int(r["proto"]))
        g = groups[(int(r["sec"]), *flow)]
        if icmp:  # the row names them as Zeek does: the first packet's type and code
            assert (r["sport"], r["dport"]) == (first[flow]["icmp_type"], first[flow]["icmp_code"])
            icmp_rows += 1
        fwd = [bytes(pk["src"]) == bytes(r["src"]) and pk["sport"] == ports[0] for pk in g]
        assert (r["pkts_fwd"], r["pkts_rev"]) == (sum(fwd), len(g) - sum(fwd))
        assert r["bytes_fwd"] == sum(int(pk["wire_len"]) for pk, f in zip(g, fwd, strict=True) if f)
        assert r["bytes_rev"] == sum(int(pk["wire_len"]) for pk, f in zip(g, fwd, strict=True) if not f)
        for col, field in (("len", "ip_len"), ("ttl", "ttl"), ("win", "tcp_win")):
            v = [int(pk[field]) for pk in g]
            assert r[f"{col}_min"] == min(v) and r[f"{col}_max"] == max(v)
            assert r[f"{col}_mean"] == np.float32(sum(v) / len(v))
        v = [int(pk["ip_len"]) for pk in g]
        assert r["len_std"] == pytest.approx(np.std(v), rel=1e-5, abs=1e-3)
        for bit, name in enumerate(("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns")):
            assert r[f"n_{name}"] == sum(int(pk["tcp_flags"]) >> bit & 1 for pk in g)
        counts = [0] * 4 if anomalies is None else anomalies[members[(int(r["sec"]), *flow)]].sum(0).tolist()
        assert [int(r[f"n_{name}"]) for name in ANOMALY_NAMES] == counts
    assert icmp_rows > 0


@pytest.mark.parametrize(
    "path",
    [ATTACKS / "nmap.pcapng", ATTACKS / "hping3.pcapng", ATTACKS / "amp.dns.RRSIG.fragmented.pcap", MAWI_PCAP],
    ids=lambda v: v.name,
)
def test_header_anomalies_equal_tshark(path):
    """Fragments, bad fragments, IP options and impossible TCP flags, packet by packet, as tshark dissects them."""
    packets = np.concatenate(list(read_packets(path)))  # file order, as tshark prints them
    ours = header_anomalies(packets)
    ref = reference.header_anomalies(path)
    assert np.array_equal(np.zeros_like(ref) if ours is None else ours, ref)


def test_header_anomalies_of_derived_fragments_options_and_extension_headers(tmp_path):
    derived = [
        pcaptools.add_ipv4_options(MAWI_PCAP, tmp_path / "opts.pcap", words=1)[0],
        pcaptools.add_ipv6_extensions(ATTACKS / "amp.dns.RRSIG.fragmented.pcap", tmp_path / "ext0.pcap", 0)[0],
        pcaptools.add_ipv6_extensions(ATTACKS / "amp.dns.RRSIG.fragmented.pcap", tmp_path / "ext5.pcap", 8190)[0],
    ]
    got = []
    for path in derived:
        ours = header_anomalies(np.concatenate(list(read_packets(path))))
        assert ours is not None
        assert np.array_equal(ours, reference.header_anomalies(path))
        got.append(ours.sum(0))
    assert got[0][2] > 1000  # options on every IPv4 packet
    assert got[1][1] > 0 and got[1][2] > 0  # atomic IPv6 fragments (offset 0, M=0) behind extension headers
    assert got[2][1] > 0  # ends past 65,535 bytes


_UNITS = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def tshark_conv(path, proto: str) -> dict:
    """tshark -q -z conv,PROTO: endpoint pair → (frames, bytes, bytes unit)."""
    out = subprocess.run(
        [
            "tshark",
            "-o",
            "ip.defragment:FALSE",
            "-o",
            "ipv6.defragment:FALSE",
            "-r",
            str(path),
            "-q",
            "-z",
            f"conv,{proto}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    conv = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 12 or parts[1] != "<->":
            continue
        (a, ap), (b, bp) = (x.rsplit(":", 1) for x in (parts[0], parts[2]))
        key = frozenset([(a.strip("[]"), int(ap)), (b.strip("[]"), int(bp))])
        conv[key] = (int(parts[9]), int(parts[10]), parts[11])
    return conv


def _tunnel_lines(path, key) -> list[str]:
    (a, ap), (b, bp) = sorted(key)
    flt = f"ip.addr=={a} && ip.addr=={b}"
    return subprocess.run(
        ["tshark", "-r", str(path), "-Y", flt, "-T", "fields", "-e", "ip.src"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


@pytest.mark.parametrize(
    "path,proto,num",
    [
        (DATA / "zeek" / "ssh_sshguess.pcap", "tcp", 6),
        (DATA / "zeek" / "ftp_bruteforce.pcap", "tcp", 6),
        (ATTACKS / "amp.dns.RRSIG.fragmented.pcap", "udp", 17),
        (ATTACKS / "hping3.pcapng", "tcp", 6),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
@pytest.mark.slow
def test_conversations_equal_tshark_conv_tables(path, proto, num):
    """Conversation count, frames and bytes per conversation equal tshark's conv tables.

    tshark prints bytes rounded to kB/MB above 1 kB: those compare to the unit.
    """
    packets = load(path)
    packets = packets[(packets["frag"] & 8) == 0]  # non-first fragments belong to no conversation
    ours = {}
    for (key, frames, nbytes), n in flow_totals(run_seconds(FlowTable(NO_TIMEOUT), packets), num).items():
        f0, b0 = ours.get(key, (0, 0))
        ours[key] = (f0 + frames * n, b0 + nbytes * n)
    ref = tshark_conv(path, proto)
    # tshark also tabulates the inner header of tunnelled packets; a flow here is the outer one.
    inner = {k for k in set(ref) - set(ours) if any("," in line for line in _tunnel_lines(path, k))}
    assert set(ref) - set(ours) == inner and set(ours) <= set(ref) and len(ours) > 5
    for key, (frames, nbytes, unit) in ref.items():
        if key in inner:
            continue
        f, b = ours[key]
        assert f == frames
        assert abs(b / _UNITS[unit] - nbytes) < 1, (key, b, nbytes, unit)


def test_stats_kernel_refuses_bad_indices():
    """The C kernel checks every index it is given instead of reading out of bounds."""
    from sensor import _flowstats
    from sensor.flows import _STAT_OFFSETS

    p = np.zeros(4, dtype=PACKET_DTYPE)
    low, out, ts = np.zeros(4, np.uint8), np.zeros((2, _flowstats.N_COLS), np.int64), np.zeros(4, np.int64)

    def call(order, starts, init=None, size=p.itemsize):
        init = np.zeros(2, np.uint8) if init is None else init
        _flowstats.group_stats(
            p, size, *_STAT_OFFSETS, np.asarray(order, np.int64), np.asarray(starts, np.int64), low, init, out, ts
        )

    call([0, 1, 2, 3], [0, 2])
    assert out[:, 0].tolist() == [2, 2]
    for order, starts, match in (
        ([0, 1, 2, 4], [0, 2], "order"),
        ([0, 1, 2, -1], [0, 2], "order"),
        ([0, 1, 2, 3], [1, 2], "starts"),
        ([0, 1, 2, 3], [0, 4], "starts"),
        ([0, 1, 2, 3], [2, 2], "starts"),
    ):
        with pytest.raises(ValueError, match=match):
            call(order, starts)
    with pytest.raises(ValueError, match="lengths"):
        call([0, 1, 2, 3], [0, 2], init=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="offsets"):
        call([0, 1, 2, 3], [0, 2], size=8)


def _second(n_new: int, sec: int, first_ip: int = 1 << 24) -> np.ndarray:
    """One second of ``n_new`` one-packet flows from distinct sources to one victim."""
    return np.concatenate([_pkt(sec + i / (n_new + 1), first_ip + i, 2, 1024 + i % 60000, 80) for i in range(n_new)])


def test_cap_holds_within_a_second_idle_flows_make_room_first():
    t = FlowTable(FlowConfig(max_flows=300))
    old = t.update(_second(200, 10), 10)
    assert len(old) == 200 and len(t) == 200
    # 250 new flows in one second: 100 fit, 150 need room; the 200 idle flows give it (oldest first).
    rows = t.update(_second(250, 11, first_ip=5 << 24), 11)
    assert len(rows) == 250 and len(t) <= 300
    assert t.counters.evicted == 150 and t.counters.shed == 0
    # A flow seen this second is never evicted for a newcomer: the newcomers beyond the cap are shed.
    both = np.concatenate([_second(250, 12, first_ip=5 << 24), _second(100, 12, first_ip=9 << 24)])
    rows = t.update(both[np.argsort(both["ts"], kind="stable")], 12)
    assert len(t) <= 300 and t.counters.shed > 0
    assert set(rows["src"][:, 12].tolist()) >= {5}  # the tracked flows kept their rows
    assert t.counters.shed_packets == t.counters.shed  # one packet each
    assert len(rows) + t.counters.shed == 350


def test_memory_budget_bounds_the_flows_of_one_second():
    cfg = FlowConfig(max_flows=20_000, memory_mb=32)
    t = FlowTable(cfg)
    n = cfg.max_active + 500
    rows = t.update(_second(n, 20), 20)
    assert len(rows) == cfg.max_active and t.counters.shed == 500
    # The earliest arrivals are the ones tracked.
    first = {int.from_bytes(bytes(r[12:]), "big") for r in rows["src"]}
    assert max(first) - (1 << 24) < cfg.max_active


def test_a_budget_too_small_for_the_cap_is_refused():
    from sensor.config import pipeline_config
    from sensor.errors import ConfigError
    from sensor.settings import defaults

    v = {**defaults(), "features.max-flows": 10_000_000, "features.memory-mb": 256}
    with pytest.raises(
        ConfigError,
        match=r"features\.max-flows 10000000 needs at least \d+ MiB of "
        r"features\.memory-mb \(it is 256\)",
    ):
        pipeline_config(v)


FLOOD_RSS = """
import json, sys


def peak_rss_mb():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a big parent reads the parent's peak.
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) / 1024


sys.path.insert(0, "bench")
from pathlib import Path
from throughput import build_flood
from sensor.capture import read_packets
from sensor.pipeline import FeaturePipeline
path = Path(sys.argv[1])
build_flood(path, 600_000, 300_000)
p, peak = FeaturePipeline(), 0
for b in read_packets(path):
    p.push(b)
    peak = max(peak, len(p.flows))
p.finish()
c = p.flows.counters
print(json.dumps({"rss_mb": peak_rss_mb(), "peak": peak,
                  "shed": c.shed, "created": c.created}))
"""


@pytest.mark.slow
def test_spoofed_flood_stays_within_the_memory_budget(tmp_path):
    """A spoofed SYN flood at 300k new flows/s under the default settings: RSS stays bounded
    (it passed 700 MB before the budget), the flows beyond it are shed and counted."""
    import json
    import sys
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-c", FLOOD_RSS, str(tmp_path / "flood.pcap")],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    r = json.loads(out.splitlines()[-1])
    assert r["rss_mb"] < 330, r
    assert r["shed"] > 0 and r["created"] + r["shed"] == 600_000
