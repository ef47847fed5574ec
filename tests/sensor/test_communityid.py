"""Community ID of alerts against the spec's published vectors and tshark's communityid dissector."""

from __future__ import annotations

import calendar
import ipaddress
import subprocess
import time

import jsonschema
import numpy as np
import pytest

from sensor.eve import alert_records, community_ids
from sensor.pipeline import run_files
from sensor.windows import KEY_DTYPE

from ..conftest import ATTACKS, MAWI_PCAP
from .evecheck import SCHEMA_JSON

# The Community ID spec's published examples (corelight/community-id-spec, as its reference
# implementation pycommunityid tests them), seed 0: (proto, src, dst, sport or ICMP type,
# dport or ICMP code, ID).  Both directions of a flow share an ID; ICMP types without a
# counterpart are one-way, so their code counts and they are never reordered.
SPEC_VECTORS = [
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "10.0.0.1", "10.0.0.2", 10, 11569, "1:SXBGMX1lBOwhhoDrZynfROxnhnM="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (132, "192.168.170.8", "192.168.170.56", 7, 80, "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ="),
    (132, "192.168.170.56", "192.168.170.8", 80, 7, "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 20, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.89", "192.168.0.1", 20, 0, "1:3o2RFccXzUgjl7zDpqmY7yJi8rI="),
    (1, "192.168.0.89", "192.168.0.1", 20, 1, "1:tz/fHIDUHs19NkixVVoOZywde+I="),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 0, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 0, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "3ffe:507:0:1:260:97ff:fe07:69ea", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, "1:NdobDX8PQNJbAyfkWxhtL2Pqp5w="),
    (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:507:0:1:260:97ff:fe07:69ea", 3, 0, "1:/OGBt9BN1ofenrmSPWYicpij2Vc="),
    (46, "10.1.24.4", "10.1.12.1", 0, 0, "1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4="),  # no ports: RSVP
    (46, "10.1.12.1", "10.1.24.4", 0, 0, "1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4="),
]


def _ours(addr: str) -> np.ndarray:
    """An address in the sensor's 16-byte form (IPv4 as IPv4-mapped IPv6)."""
    ip = ipaddress.ip_address(addr)
    return np.frombuffer(ip.packed if ip.version == 6 else bytes(10) + b"\xff\xff" + ip.packed, np.uint8)


def test_community_ids_are_the_spec_vectors():
    keys = np.zeros(len(SPEC_VECTORS), KEY_DTYPE)
    for k, (proto, src, dst, sport, dport, _) in zip(keys, SPEC_VECTORS, strict=True):
        k["src"], k["dst"], k["sport"], k["dport"], k["proto"], k["l4"] = _ours(src), _ours(dst), sport, dport, proto, 1
    for got, vector in zip(community_ids(keys), SPEC_VECTORS, strict=True):
        assert got == vector[-1], vector


@pytest.mark.slow
@pytest.mark.parametrize("path", [ATTACKS / "nmap.pcapng", MAWI_PCAP], ids=lambda v: v.name)
def test_every_community_id_is_the_one_tshark_computes(path):
    """Each alert's Community ID equals the one tshark's own implementation gives the flow's
    first packet (TCP, UDP, ICMP, ICMPv6); ICMP alerts are written as Suricata writes them."""
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "--enable-protocol",
            "communityid",
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "communityid",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    reference = {}
    for line in out.splitlines():
        ts, src4, src6, dst4, dst6, cid = line.split("\t")
        if not cid:
            continue
        sec, frac = ts.split(".")
        # An ICMP error quotes the offending packet's header: the outer (first) addresses are the packet's.
        key = (
            int(sec) * 1_000_000 + int(frac[:6].ljust(6, "0")),
            (src4 or src6).split(",")[0],
            (dst4 or dst6).split(",")[0],
        )
        reference.setdefault(key, cid)
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    alerts = [
        r
        for w in (w for o in run_files([path]) for w in o.windows)
        for r in alert_records(w, np.ones(len(w), np.float32), 0.5, "test@0123456789ab")
    ]
    icmp = [r for r in alerts if r["proto"] in ("ICMP", "IPv6-ICMP")]
    assert len(icmp) > 10 and len(alerts) > len(icmp)
    for r in alerts:
        start = r["flow"]["start"]
        us = calendar.timegm(time.strptime(start[:19], "%Y-%m-%dT%H:%M:%S")) * 1_000_000 + int(start[20:26])
        assert r["community_id"] == reference[(us, r["src_ip"], r["dest_ip"])], r
    for r in icmp:
        assert not list(validator.iter_errors(r))
        assert "src_port" not in r and "dest_port" not in r
        # Type and code when the first packet's ICMP header was captured; nothing rather than 0 when not
        # (tshark then hashes without them too).
        assert ("icmp_type" in r) == ("icmp_code" in r) and 0 <= r.get("icmp_type", 0) < 256
