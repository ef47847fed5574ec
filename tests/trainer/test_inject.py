"""Injecting real attack captures into the MAWI background, and reading the labels back."""

from __future__ import annotations

import numpy as np
import pytest

from sensor.capture import read_packets
from trainer.inject import AttackSpec, inject
from trainer.labels import match_packets, read_csv, read_xml

from ..conftest import ATTACKS, MAWI_PCAP

SPECS = [
    f"{ATTACKS / 'pkt.TCP.synflood.spoofed.pcap'}@20:2:DDoSSYN:dst=10.10.10.10",
    f"{ATTACKS / 'hping3.pcapng'}@45:4:ntscSYN:src=192.168.181.160+192.168.181.161+192.168.181.162+"
    "192.168.181.163+192.168.181.164+192.168.181.165",
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    d = tmp_path_factory.mktemp("mix")
    summary = inject(
        str(MAWI_PCAP),
        [AttackSpec.parse(s) for s in SPECS],
        str(d / "m.pcap"),
        str(d / "m.csv"),
        str(d / "m.xml"),
        seed=3,
    )
    return d, summary


def test_merged_capture_holds_everything_in_order(mixed):
    d, summary = mixed
    packets = np.concatenate(list(read_packets(d / "m.pcap")))
    n_attack = sum(a["packets"] for a in summary["injected"])
    assert len(packets) == summary["packets"] == 91_762 + n_attack
    assert np.all(np.diff(packets["ts"]) >= 0)
    lab = [str(a) for a in summary["injected"][0]["remapped"]]
    assert "10.10.10.10" in lab  # the lab victim was moved into the background's address space


def test_labels_match_exactly_the_injected_packets(mixed):
    d, summary = mixed
    packets = np.concatenate(list(read_packets(d / "m.pcap")))
    labels = read_xml(str(d / "m.xml"))
    hit = match_packets(labels, packets)
    # Every attack packet towards the victim / from the attackers is matched ...
    flood = summary["injected"][0]
    assert (hit == 0).sum() >= 0.99 * flood["packets"]
    scan = summary["injected"][1]
    assert (hit == 1).sum() >= 0.45 * scan["packets"]  # probes; the victim's replies are not from an attacker
    # ... and nothing outside each attack's time bounds.
    for k, a in enumerate(summary["injected"]):
        t = packets["ts"][hit == k]
        assert t.min() >= a["from"] and t.max() <= a["to"] + 1000


def test_csv_and_xml_agree_on_filters(mixed):
    d, _ = mixed
    c, x = read_csv(str(d / "m.csv")), read_xml(str(d / "m.xml"))
    assert [(f.src, f.dst) for f in c.filters] == [(f.src, f.dst) for f in x.filters]
    assert x.anomalies[0].start_ns is not None and c.anomalies[0].start_ns is None


def test_same_seed_same_bytes(mixed, tmp_path):
    d, _ = mixed
    inject(
        str(MAWI_PCAP),
        [AttackSpec.parse(s) for s in SPECS],
        str(tmp_path / "m.pcap"),
        str(tmp_path / "m.csv"),
        str(tmp_path / "m.xml"),
        seed=3,
    )
    assert (tmp_path / "m.pcap").read_bytes() == (d / "m.pcap").read_bytes()
    assert (tmp_path / "m.xml").read_text() == (d / "m.xml").read_text()


def test_spec_parsing_errors():
    from sensor.errors import UsageError

    with pytest.raises(UsageError, match="PATH@OFFSET"):
        AttackSpec.parse("x.pcap")
    with pytest.raises(UsageError, match="not an IP"):
        AttackSpec.parse("x.pcap@1:1:ntscSYN:src=1.2.3")


def test_group_addresses_are_not_remapped_onto_hosts(tmp_path):
    # A lab host's DHCP to the limited broadcast and mDNS to its group, and a flood of the
    # unspecified source: the lab host moves to a background host, the groups stay groups.
    import ipaddress

    from sensor.addresses import format_addresses
    from trainer.inject import _write_pcap
    from trainer.synth import _frame

    lab, bcast, mdns, nobody = (
        int(ipaddress.ip_address(a)) for a in ("192.168.7.9", "255.255.255.255", "224.0.0.251", "0.0.0.0")
    )
    t0 = 1_574_312_400 * 10**9
    packets = [(t0 + i * 10**6, lab, bcast, 17, 68, 67, 0, 300, 0) for i in range(10)]
    packets += [(t0 + i * 10**6 + 1, lab, mdns, 17, 5353, 5353, 0, 100, 0) for i in range(10)]
    packets += [(t0 + i * 10**6 + 2, nobody, bcast, 17, 68, 67, 0, 300, 0) for i in range(10)]
    frames = [_frame(p, i, 64) for i, p in enumerate(packets)]
    attack = tmp_path / "a.pcap"
    ts = np.array([p[0] for p in packets], dtype=np.int64)
    _write_pcap(str(attack), ts, np.array([w for _, w in frames], dtype=np.int64), [f for f, _ in frames])
    out = tmp_path / "m.pcap"
    summary = inject(
        str(MAWI_PCAP),
        [AttackSpec.parse(f"{attack}@5")],
        str(out),
        str(tmp_path / "m.csv"),
        str(tmp_path / "m.xml"),
        seed=1,
    )
    assert list(summary["injected"][0]["remapped"]) == ["192.168.7.9"]
    p = np.concatenate(list(read_packets(str(out))))
    dst = set(format_addresses(p["dst"]).tolist())
    src = set(format_addresses(p["src"]).tolist())
    assert {"255.255.255.255", "224.0.0.251"} <= dst and "0.0.0.0" in src and "192.168.7.9" not in src
