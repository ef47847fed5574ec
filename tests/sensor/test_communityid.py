"""Community ID of alerts against its reference package and tshark's communityid dissector."""
from __future__ import annotations

import calendar
import subprocess
import time

import communityid
import jsonschema
import numpy as np
import pytest

from sensor.communityid import community_id
from sensor.eve import alert_records
from sensor.pipeline import run_files

from ..conftest import ATTACKS, MAWI_PCAP
from .evecheck import SCHEMA_JSON


def test_community_id_equals_the_reference_package(flood_windows):
    """Every flow of the flood, and ICMP types, against the communityid package (the spec's reference)."""
    cid = communityid.CommunityID()
    keys = np.concatenate([w.keys for w in flood_windows[:3]])
    for k in keys[:3000]:
        src, dst = k["src"].tobytes()[12:], k["dst"].tobytes()[12:]
        tpl = communityid.FlowTuple.make_tcp(src, dst, int(k["sport"]), int(k["dport"]))
        assert community_id(k["src"].tobytes(), k["dst"].tobytes(), int(k["sport"]), int(k["dport"]), 6) == cid.calc(tpl)
    a, b = bytes(10) + b"\xff\xff" + bytes([192, 168, 0, 89]), bytes(10) + b"\xff\xff" + bytes([192, 168, 0, 1])
    for t, c in ((8, 0), (0, 0), (3, 1), (11, 0)):
        tpl = communityid.FlowTuple.make_icmp(a[12:], b[12:], t, c)
        assert community_id(a, b, t, c, 1) == cid.calc(tpl)
    for seed in (0, 1, 65535):
        c2 = communityid.CommunityID(seed=seed)
        tpl = communityid.FlowTuple.make_udp(a[12:], b[12:], 5353, 53)
        assert community_id(a, b, 5353, 53, 17, seed) == c2.calc(tpl)


@pytest.mark.parametrize("path", [ATTACKS / "nmap.pcapng", MAWI_PCAP], ids=lambda v: v.name)
def test_every_community_id_is_the_one_tshark_computes(path):
    """Each alert's Community ID equals the one tshark's own implementation gives the flow's
    first packet (TCP, UDP, ICMP, ICMPv6); ICMP alerts are written as Suricata writes them."""
    out = subprocess.run(["tshark", "-r", str(path), "--enable-protocol", "communityid", "-T", "fields",
                          "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
                          "-e", "communityid"], capture_output=True, text=True, check=True).stdout
    reference = {}
    for line in out.splitlines():
        ts, src4, src6, dst4, dst6, cid = line.split("\t")
        if not cid:
            continue
        sec, frac = ts.split(".")
        # An ICMP error quotes the offending packet's header: the outer (first) addresses are the packet's.
        key = (int(sec) * 1_000_000 + int(frac[:6].ljust(6, "0")), (src4 or src6).split(",")[0],
               (dst4 or dst6).split(",")[0])
        reference.setdefault(key, cid)
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    alerts = [r for w in (w for o in run_files([path]) for w in o.windows)
              for r in alert_records(w, np.ones(len(w), np.float32), 0.5, "test@0123456789ab")]
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

