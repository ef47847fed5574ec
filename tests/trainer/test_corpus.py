"""The corpus recipe, on a shared/data-shaped tree of the real captures in tests/data."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json

import numpy as np
import pytest

from sensor.addresses import format_addresses
from sensor.capture import read_packets
from trainer import corpus
from trainer.corpus import CorpusConfig, addresses, build, ground_truth, key_host, squeeze
from trainer.inject import _write_pcap
from trainer.labels import NS, load_labels, match_packets
from trainer.synth import _MF, BENIGN_SYNTHETIC, SYNTHETIC, _frame

from ..conftest import ATTACKS, DATA

LAYOUT = {
    "benign/zeek-misc/ftp_bruteforce.pcap": DATA / "zeek" / "ftp_bruteforce.pcap",
    "benign/zeek-misc/ssh_sshguess.pcap": DATA / "zeek" / "ssh_sshguess.pcap",
    "benign/ppa-book/BGP_redist.pcap": DATA / "linktypes" / "BGP_redist.pcap",
    "benign/ppa-book/someip_sd_sample.pcap": DATA / "linktypes" / "someip_sd_sample.pcap",
    "benign/netshare-test/dlt_ppp.pcap": DATA / "linktypes" / "dlt_ppp.pcap",
    "attacks/stopddos/amp.TCP.reflection.SYNACK.pcap": ATTACKS / "amp.TCP.reflection.SYNACK.pcap",
    "attacks/probing/hping3.pcapng": ATTACKS / "hping3.pcapng",
    "attacks/probing/zmap_tcp_5k.pcapng": ATTACKS / "zmap_tcp_5k.pcapng",
}
CFG = CorpusConfig(
    seed=5,
    site_seconds=60,
    sites={"zeek-misc": 1, "ppa-book": 1},
    families=("reflection", "scan"),
    instance_spacing=20,
    synthetic=0,
    alone=True,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    for rel, src in LAYOUT.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).symlink_to(src)
    return d


@pytest.fixture(scope="module")
def built(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    build(data, out, CFG)
    return out, corpus.load(out)


def _packets(path):
    return np.concatenate(list(read_packets(path)))


ALONE = {  # each attack capture as a trace of its own; a pcapng keeps its form in the name
    "reflection--alone--amp.TCP.reflection.SYNACK",
    "scan--alone--hping3-pcapng",
    "scan--alone--zmap_tcp_5k-pcapng",
}


def _mixes(c):
    return [t for t in c["traces"] if t["kind"] == "mix" and t["source"] != corpus.ALONE]


def test_corpus_lists_sites_standalone_captures_and_one_mix_per_background_and_family(built):
    _, c = built
    by_kind = {"benign": [t for t in c["traces"] if t["kind"] == "benign"], "mix": _mixes(c)}
    assert {t["name"] for t in by_kind["benign"]} == {
        "site-zeek-misc-1",
        "site-ppa-book-1",
        "netshare-test-dlt_ppp",
    }
    assert {t["name"] for t in by_kind["mix"]} == {
        f"{f}--{b}" for f in ("reflection", "scan") for b in ("site-zeek-misc-1", "site-ppa-book-1")
    }
    assert {t["name"] for t in c["traces"] if t["source"] == corpus.ALONE} == ALONE
    assert c["families"] == ["reflection", "scan"]
    assert set(c["sources"]) == {"zeek-misc", "ppa-book", "netshare-test", corpus.ALONE}
    for t in by_kind["mix"]:
        assert t["attacks"] and all(a["family"] == t["family"] for a in t["attacks"])
        assert t["source"] == t["background"].split("-", 1)[1].rsplit("-", 1)[0]


def test_a_site_merges_its_captures_concurrently_with_their_hosts_remapped(built, data):
    out, c = built
    site = next(t for t in c["traces"] if t["name"] == "site-zeek-misc-1")
    p = _packets(site["path"])
    originals = [_packets(data / rel) for rel in site["captures"]]
    # each capture squeezed and cut to the site's length
    kept = [int((squeeze(o["ts"], CFG.max_gap, CFG.spread_pps) <= CFG.site_seconds * NS).sum()) for o in originals]
    assert len(p) == site["packets"] == sum(kept) and 0 < sum(kept) <= sum(map(len, originals))
    assert np.all(np.diff(p["ts"]) >= 0)
    assert (p["ts"][-1] - p["ts"][0]) / NS <= CFG.site_seconds
    hosts = {ipaddress.ip_address(a) for a in format_addresses(np.concatenate([p["src"], p["dst"]]))}
    private = {h for h in hosts if h.version == 4 and not h.is_global}
    # every private host of the two captures now lives in the site's own 10.16.0.0/16, one per capture
    assert private and all(h in ipaddress.ip_network("10.16.0.0/16") for h in private)
    before = sum(
        len(
            {a for a in format_addresses(np.concatenate([o["src"], o["dst"]])) if not ipaddress.ip_address(a).is_global}
        )
        for o in originals
    )
    assert len(private) == before


def test_mixes_hold_the_background_and_labelled_instances_within_their_bounds(built):
    _, c = built
    traces = {t["name"]: t for t in c["traces"]}
    for t in _mixes(c):
        bg = traces[t["background"]]
        p = _packets(t["path"])
        injected = sum(a["packets"] for a in t["attacks"])
        assert len(p) == t["packets"] == bg["packets"] + injected
        assert p["ts"].max() <= _packets(bg["path"])["ts"].max()  # clipped to the background
        labels = load_labels(t["labels"])
        hit = match_packets(labels, p)
        assert 0 < int((hit >= 0).sum()) >= min(a["packets"] for a in t["attacks"]) // 2
        for a in t["attacks"]:
            inside = (p["ts"] >= a["from_ns"]) & (p["ts"] <= a["to_ns"])
            texts = format_addresses(p["src"] if a["role"] == "src" else p["dst"])
            assert (texts[inside] == a["key"]).any()
            assert a["key"] in a["hosts"]
            assert a["rate"] in corpus.RATES


def test_an_attack_alone_is_its_prepared_capture_labelled_like_its_instances_in_mixes(built):
    _, c = built
    for t in (t for t in c["traces"] if t["source"] == corpus.ALONE):
        assert t["kind"] == "mix" and t["background"] == corpus.ALONE and t["name"].startswith(t["family"] + "--")
        p = _packets(t["path"])
        [a] = t["attacks"]
        assert len(p) == t["packets"] == a["packets"] > 0
        assert (a["from_ns"], a["to_ns"]) == (int(p["ts"].min()), int(p["ts"].max()))
        keyed = format_addresses(p["src"] if a["role"] == "src" else p["dst"]) == a["key"]
        hit = match_packets(load_labels(t["labels"]), p)
        assert keyed.any() and ((hit >= 0) == keyed).all()  # what both label files say: the key host's packets
        assert a["key"] in a["hosts"]


def test_without_alone_there_are_none_and_the_mixes_are_as_they_were(data, built, tmp_path):
    out, c0 = built
    build(data, tmp_path, dataclasses.replace(CFG, alone=False))
    c = corpus.load(tmp_path)
    assert {t["name"] for t in c["traces"]} == {t["name"] for t in c0["traces"]} - ALONE
    assert not (tmp_path / corpus.ALONE).exists()
    for t in _mixes(c):
        assert (tmp_path / f"mixes/{t['name']}.pcap").read_bytes() == (out / f"mixes/{t['name']}.pcap").read_bytes()


def test_the_recipe_is_deterministic(data, built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    build(data, again, CFG)

    def digest(d):
        files = sorted(p for p in d.rglob("*") if p.is_file())
        return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert digest(again) == digest(out)
    first = json.loads((out / "corpus.json").read_text())
    assert first["config"]["seed"] == 5


def test_gaps_are_squeezed_and_instants_spread():
    ts = np.array([0, 1, 2, 100 * NS, 100 * NS + 5], dtype=np.int64)
    assert squeeze(ts, 5.0, 1000).tolist() == [0, 1, 2, 2 + 5 * NS, 7 + 5 * NS]
    flat = squeeze(np.full(4, 7 * NS, dtype=np.int64), 5.0, 1000)
    assert flat.tolist() == [0, NS // 1000, 2 * NS // 1000, 3 * NS // 1000]


def test_the_key_host_prefers_the_lab_host_of_a_two_host_exchange():
    from collections import Counter

    src = Counter({"1.1.1.1": 25, "192.168.1.5": 25})
    dst = Counter({"192.168.1.5": 25, "1.1.1.1": 25})
    assert key_host(src, dst) == ("192.168.1.5", "src")
    flood = Counter({f"203.0.113.{i}": 1 for i in range(50)})
    assert key_host(flood, Counter({"10.10.10.10": 50})) == ("10.10.10.10", "dst")
    # A flood to the broadcast or from the unspecified address: the host in it is the key.
    assert key_host(Counter({"192.168.1.9": 40}), Counter({"255.255.255.255": 40})) == ("192.168.1.9", "src")
    assert key_host(Counter({"0.0.0.0": 40}), Counter({"192.168.1.1": 40})) == ("192.168.1.1", "dst")


def _write(path, packets):
    frames = [_frame(p, i, 64) for i, p in enumerate(packets)]
    ts = np.array([p[0] for p in packets], dtype=np.int64)
    _write_pcap(str(path), ts, np.array([w for _, w in frames], dtype=np.int64), [f for f, _ in frames])
    return path


def _ip(text):
    return int(ipaddress.ip_address(text))


def test_the_labelled_hosts_are_the_attack_not_the_busiest_host(tmp_path):
    lab, resolver, spoofed, victim = map(_ip, ("10.0.0.6", "151.164.1.8", "10.1.1.1", "129.111.30.27"))
    # Teardrop's capture: the lab host's DNS and pings around two overlapping fragments
    # from a spoofed source (a tiny first fragment, the second starting inside it).
    chatter = [(i * NS, lab, resolver, 17, 5000 + i, 53, 0, 40, 0) for i in range(3)]
    chatter += [(i * NS + 1, resolver, lab, 17, 53, 5000 + i, 0, 200, 0) for i in range(3)]
    frags = [(5 * NS, spoofed, victim, 17, 31915, 20197, 0, 28, _MF), (5 * NS + 1, spoofed, victim, 17, 0, 0, 0, 4, 3)]
    counts = addresses(_write(tmp_path / "teardrop.pcap", chatter + frags))
    assert key_host(counts.src, counts.dst)[0] == "10.0.0.6"  # what the busiest host would label
    assert ground_truth(counts) == (("10.1.1.1",), "src")
    # A flood of spoofed clients, one packet each: every source is the attack.
    clients = [(i * 1000, _ip("128.2.8.0") + i, _ip("128.2.5.0") + i, 17, 68, 67, 0, 300, 0) for i in range(100)]
    keys, role = ground_truth(addresses(_write(tmp_path / "dhcp.pcap", clients)))
    assert role == "src" and len(keys) == 100 and "128.2.8.99" in keys
    # One victim in every packet stays the one key.
    flood = [(i * 1000, _ip("203.0.113.0") + i % 50, victim, 6, 1024 + i, 80, 0x02, 0, 0) for i in range(200)]
    assert ground_truth(addresses(_write(tmp_path / "flood.pcap", flood))) == (("129.111.30.27",), "dst")


def test_unknown_families_and_sources_are_refused_in_one_line(data, tmp_path):
    from sensor.errors import UsageError

    with pytest.raises(UsageError, match="unknown attack family nope"):
        build(data, tmp_path / "x", CorpusConfig(families=("nope",), sites={"zeek-misc": 1}))
    with pytest.raises(UsageError, match="no benign/iot-sentinel/ captures"):
        build(data, tmp_path / "y", CorpusConfig(sites={"iot-sentinel": 1}))


def test_a_corpus_split_trains_on_nothing_it_holds_out(built):
    from trainer.dataset import corpus_split

    _, c = built
    split = corpus_split(c, ["scan"], ["ppa-book"])
    traces = {t["name"]: t for t in c["traces"]}
    reflection_alone = "reflection--alone--amp.TCP.reflection.SYNACK"
    assert split.train == {
        "site-zeek-misc-1",
        "netshare-test-dlt_ppp",
        "reflection--site-zeek-misc-1",
        reflection_alone,
    }
    assert split.test == {"site-ppa-book-1", "scan--site-ppa-book-1"}
    assert not split.train & split.test
    for name in split.train:
        assert traces[name]["source"] != "ppa-book" and traces[name].get("family") != "scan"
    assert split.families == ("reflection",) and split.held_out_families == ("scan",)
    assert split.held_out_sources == ("ppa-book",) and "ppa-book" not in split.sources
    # only a family held out: its mixes on every background are the test, no benign trace is
    only_family = corpus_split(c, ["scan"])
    assert only_family.test == {"scan--site-zeek-misc-1", "scan--site-ppa-book-1"} | {
        n for n in ALONE if n.startswith("scan--")
    }
    with pytest.raises(Exception, match="not in the corpus: nope"):
        corpus_split(c, ["nope"])
    # a calibration source is taken from training whole (its benign trace and its mixes of
    # trained families); a held-out family's mix on it is used by no side
    cal = corpus_split(c, ["scan"], ["ppa-book"], ["zeek-misc"])
    assert cal.calibrate == {"site-zeek-misc-1", "reflection--site-zeek-misc-1"}
    assert cal.train == {"netshare-test-dlt_ppp", reflection_alone} and cal.test == split.test
    assert cal.calibration_sources == ("zeek-misc",) and "zeek-misc" not in cal.sources
    assert corpus_split(c, (), (), ["zeek-misc"]).test == set()
    assert "scan--site-zeek-misc-1" not in corpus_split(c, ["scan"], (), ["zeek-misc"]).test
    with pytest.raises(Exception, match="both held out and calibrated on: ppa-book"):
        corpus_split(c, (), ["ppa-book"], ["ppa-book"])


def _same_mixes(before, after):
    """``after``'s traces by name, once every mix of ``before`` is byte-for-byte one of them."""
    now = {t["name"]: t for t in after["traces"]}
    for t in before["traces"]:
        if t["kind"] == "mix":
            digest = [hashlib.sha256(open(x["path"], "rb").read()).hexdigest() for x in (t, now[t["name"]])]
            assert digest[0] == digest[1], t["name"]
    return now


def test_synthetic_families_add_mixes_and_leave_the_real_ones_as_they_were(data, built, tmp_path):
    """Synthetic families come from a random stream of their own: with them, every real mix is
    byte-for-byte the one built without them, and each background gets one mix per synthetic family."""
    _, c0 = built
    out = tmp_path / "synth"
    build(data, out, dataclasses.replace(CFG, synthetic=1))
    c = corpus.load(out)
    assert c["families"] == ["reflection", "scan", *SYNTHETIC]
    synth = [t for t in _mixes(c) if t["family"] in SYNTHETIC]
    assert {t["family"] for t in c["traces"] if t["source"] == corpus.ALONE} == {"reflection", "scan", *SYNTHETIC}
    assert {t["name"] for t in synth} == {
        f"{f}--{b}" for f in SYNTHETIC for b in ("site-zeek-misc-1", "site-ppa-book-1")
    }
    _same_mixes(c0, c)
    for t in synth:
        assert t["attacks"] and all(a["packets"] > 0 and a["hosts"] for a in t["attacks"])
        p = _packets(t["path"])
        hit = match_packets(load_labels(t["labels"]), p)
        assert int((hit >= 0).sum()) >= min(a["packets"] for a in t["attacks"]) // 2


def test_benign_shapes_add_unlabelled_mixes_and_leave_the_rest_as_it_was(data, built, tmp_path):
    """--benign-synthetic: one mix of each benign shape per background, with no labels and no
    instances (benign windows only, evaluated by no split), from a stream of its own."""
    _, c0 = built
    out = tmp_path / "benign"
    build(data, out, dataclasses.replace(CFG, benign_synthetic=1))
    c = corpus.load(out)
    assert c["families"] == c0["families"]
    old = {t["name"] for t in c0["traces"]}
    added = [t for t in c["traces"] if t["name"] not in old]
    assert {t["name"] for t in added} == {
        f"{s}--{b}" for s in BENIGN_SYNTHETIC for b in ("site-zeek-misc-1", "site-ppa-book-1")
    }
    now = _same_mixes(c0, c)
    for t in added:
        assert t["kind"] == "mix" and t["labels"] == [] and t["attacks"] == []
        assert len(_packets(t["path"])) > len(_packets(now[t["background"]]["path"]))
        assert not list((out / "mixes").glob(f"{t['name']}.csv"))
    from trainer.dataset import corpus_split

    split = corpus_split(c, ["scan"], ["zeek-misc"])
    assert "benign-fragments--site-ppa-book-1" in split.train
    assert not any(t.startswith("benign-fragments") for t in split.test)


def test_loopback_frames_are_found_for_both_ip_versions():
    from trainer.corpus import _loopback
    from trainer.synth import _frame

    lo, ext = int(ipaddress.IPv4Address("127.0.0.1")), int(ipaddress.IPv4Address("192.0.2.1"))
    v4 = [_frame((0, a, b, 17, 1, 2, 0, 0, 0), 1, 64)[0] for a, b in ((lo, lo), (ext, lo), (ext, ext))]
    v6 = bytes(14) + bytes([0x60]) + bytes(7) + bytes(15) + b"\x01" + bytes(16)
    got = _loopback([*v4, v6, v6[:30]], np.full(5, 14))
    assert got.tolist() == [True, True, False, True, False]
