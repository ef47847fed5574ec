"""Link layers (sensor/capture/linklayer.py): PPP, Cisco HDLC with MPLS, PPI — every packet against tshark."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from sensor.addresses import format_addresses
from sensor.capture import read_packets

from ..conftest import DATA

CAPTURES = sorted((DATA / "linktypes").glob("*.pcap"))
FIELDS = (
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ip.len",
    "tcp.srcport",
    "udp.srcport",
    "tcp.dstport",
    "udp.dstport",
)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_packet_equals_tshark(path):
    got = np.concatenate(list(read_packets(path)))
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", *(a for f in FIELDS for a in ("-e", f))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    ref = []
    for line in out:
        c = [v.split(",")[0] for v in line.split("\t")]  # an ICMP error's inner header comes second
        ref.append((c[0], c[1], int(c[2]), int(c[3]), int(c[4]), int(c[5] or c[6] or 0), int(c[7] or c[8] or 0)))
    ours = list(
        zip(
            format_addresses(got["src"]),
            format_addresses(got["dst"]),
            got["proto"].tolist(),
            got["ttl"].tolist(),
            got["ip_len"].tolist(),
            got["sport"].tolist(),
            got["dport"].tolist(),
            strict=True,
        )
    )
    assert len(ours) == len(ref) > 0 and ours == ref
    assert (got["l3"] == 4).all()
