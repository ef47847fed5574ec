"""Synthetic collective anomalies: each capture has its family's shape, read back by the sensor's reader and tshark."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from sensor.addresses import format_addresses
from sensor.capture import read_packets
from sensor.flows import header_anomalies
from trainer.synth import BENIGN_SYNTHETIC, SYNTHETIC, write_capture

from ..sensor import reference


def _shape(path):
    p = np.concatenate(list(read_packets(path)))
    src, dst = format_addresses(p["src"]), format_addresses(p["dst"])
    top_src, n_top_src = np.unique(src, return_counts=True)
    top_dst, n_top_dst = np.unique(dst, return_counts=True)
    s, d = top_src[np.argmax(n_top_src)], top_dst[np.argmax(n_top_dst)]
    return p, src, dst, s, d


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("family", SYNTHETIC)
def test_each_capture_has_its_familys_shape(family, seed, tmp_path):
    path = tmp_path / f"{family}.pcap"
    n = write_capture(family, path, seed)
    p, src, dst, s, d = _shape(path)
    assert len(p) == n >= 20
    assert (np.diff(p["ts"].astype(np.int64)) >= 0).all()
    if family == "synth-fanout":  # one source probing many destinations or ports, mostly unanswered
        probes = src == s
        assert probes.mean() >= 0.7
        assert len(set(dst[probes])) > 10 or len(set(p["dport"][probes].tolist())) > 10
    elif family == "synth-fanin":  # many sources converging on one destination
        assert (dst == d).all() and len(set(src)) >= 20
    elif family == "synth-replies":  # answers from service ports to one victim
        assert (dst == d).all() and len(set(src)) >= 10
        assert len(set(p["sport"].tolist())) == 1 and int(p["sport"][0]) < 12000
    elif family == "synth-point":  # one source to one destination, at most four flows, fast
        assert (src == s).mean() >= 0.7 and len(set(dst[src == s])) == 1
        assert len(set(p["sport"][src == s].tolist())) <= 4
        assert len(p) / max((int(p["ts"][-1]) - int(p["ts"][0])) / 1e9, 0.05) >= 100
    elif family == "synth-beacon":  # one pair, a new connection every period, a little jittered
        assert len(set(src) | set(dst)) == 2
        mine = src == src[0]  # the client calls first
        calls, first = np.unique(p["sport"][mine], return_index=True)
        assert len(calls) >= 7
        gaps = np.diff(np.sort(p["ts"][mine][first].astype(np.int64)))
        assert gaps.std() <= 0.25 * gaps.mean()
    else:  # packets no stack sends, as tshark dissects them, among the attacker's ordinary ones
        anomalies = reference.header_anomalies(path)
        assert np.array_equal(header_anomalies(p), anomalies)
        assert anomalies.any(axis=1).sum() >= 0.2 * n


@pytest.mark.parametrize("seed", range(4))
def test_benign_fragments_are_whole_datagrams_cut_at_the_mtu(seed, tmp_path):
    """One client and its servers; every fragmented datagram is MTU-sized pieces under one IP
    identification that tshark pairs, and nothing is malformed or a header anomaly but ``frag``."""
    path = tmp_path / "b.pcap"
    n = write_capture("benign-fragments", path, seed)
    p = _shape(path)[0]
    assert len(p) == n >= 20
    anomalies = reference.header_anomalies(path)
    assert np.array_equal(header_anomalies(p), anomalies)
    assert anomalies[:, 0].sum() > 0 and anomalies[:, 1:].sum() == 0  # fragments, none of them odd
    rows = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.id"]
        + ["-e", "ip.flags.mf", "-e", "ip.frag_offset", "-e", "ip.len"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    datagrams: dict[tuple[str, str, str], list[tuple[int, int, int]]] = {}
    for line in rows:
        src, dst, ident, mf, off, length = line.split("\t")
        if mf == "1" or off != "0":
            datagrams.setdefault((src, dst, ident), []).append((int(off), int(mf), int(length)))
    assert datagrams
    for pieces in datagrams.values():
        pieces.sort()
        assert pieces[0][0] == 0 and pieces[-1][1] == 0 and all(mf == 1 for _, mf, _ in pieces[:-1])
        assert all(length == 1500 for _, _, length in pieces[:-1])
        assert [o for o, _, _ in pieces] == [i * 185 for i in range(len(pieces))]  # 8-byte units
    hosts = set(format_addresses(p["src"])) | set(format_addresses(p["dst"]))
    assert 2 <= len(hosts) <= 13


def test_malformed_captures_cover_every_kind(tmp_path):
    seen = np.zeros(4, dtype=np.int64)
    for seed in range(12):
        path = tmp_path / f"{seed}.pcap"
        write_capture("synth-malformed", path, seed)
        p = _shape(path)[0]
        got = header_anomalies(p)
        seen += 0 if got is None else got.sum(0)
    assert (seen > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("family", (*SYNTHETIC, *BENIGN_SYNTHETIC))
def test_tshark_reads_every_packet_and_none_is_malformed(family, tmp_path):
    path = tmp_path / f"{family}.pcap"
    n = write_capture(family, path, 0)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "_ws.malformed", "-e", "ip.src"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == n and not any(line.split("\t")[0] for line in out)


def test_the_same_seed_writes_the_same_capture(tmp_path):
    for family in (*SYNTHETIC, *BENIGN_SYNTHETIC):
        a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
        write_capture(family, a, 3)
        write_capture(family, b, 3)
        assert a.read_bytes() == b.read_bytes()
