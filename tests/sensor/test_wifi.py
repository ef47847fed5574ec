"""802.11 link types (105, radiotap 127, AVS 163, Prism 119, PPI 192 around 802.11): every frame against tshark.

The captures in tests/data/wifi/ are made by scripts/make_wifi_fixtures.py from real Ethernet
captures (see the README there); tshark dissects them independently.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sensor.capture import read_packets
from sensor.capture.linklayer import SUPPORTED_LINKTYPES
from sensor.capture.records import HDR_TRUNC

from ..conftest import DATA
from . import reference
from .test_capture import assert_fields_equal_tshark, load

WIFI = DATA / "wifi"
CAPTURES = sorted(WIFI.glob("*.pcap*"))
ROOT = DATA.parents[1]

_FLAGS = [
    "frame.interface_id",
    "_ws.malformed",
    "_ws.short",
    "radiotap.flags.badfcs",
    "wlan.fc.type",
    "wlan.fc.protected",
]


def _tshark_flags(path) -> dict[str, np.ndarray]:
    rows = reference.tshark_fields(path, _FLAGS)
    return {
        "malformed": np.array([bool(r["_ws.malformed"]) for r in rows]),
        "short": np.array([bool(r["_ws.short"]) for r in rows]),
        "badfcs": np.array([r["radiotap.flags.badfcs"] in ("1", "True") for r in rows]),
        "data": np.array([r["wlan.fc.type"] == "2" for r in rows]),
        "protected": np.array([r["wlan.fc.protected"] in ("1", "True") for r in rows]),
    }


def test_fixtures_are_there_and_small():
    assert [p.name for p in CAPTURES] == ["malformed.pcapng", "radiotap.pcap", "wlan-mixed.pcapng", "wlan.pcap"]
    assert sum(p.stat().st_size for p in CAPTURES) < 200_000


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_frame_equals_tshark(path):
    ours = load(path)
    counts = assert_fields_equal_tshark(path, ours)
    t = _tshark_flags(path)
    trunc = (ours["hdr"] & HDR_TRUNC) != 0
    # What tshark calls malformed is cut or damaged here; a link or IP header cut or damaged
    # here is malformed, cut by the snaplen, or failed its FCS check (tshark still dissects
    # those) there.  (An IP packet whose transport header is missing is flagged too: see the
    # transport checks above.)
    assert np.all(trunc[t["malformed"]])
    assert np.all((t["malformed"] | t["short"] | t["badfcs"])[trunc & (ours["l3"] == 0)])
    # No IP from encrypted data frames, management or control frames, or frames that failed the FCS.
    assert np.all(ours["l3"][t["protected"] | ~t["data"] | t["badfcs"]] == 0)
    if path.name != "malformed.pcapng":
        assert counts["ipv4"] > 30 and counts["tcp"] > 20
    if path.name in ("wlan.pcap", "radiotap.pcap"):
        assert counts["ipv6"] == 9 and counts["udp"] > 5 and counts["icmp"] > 0
        assert t["protected"].sum() >= 4 and (~t["data"]).sum() > 20
    # batch boundaries change nothing
    assert np.array_equal(np.concatenate(list(read_packets(path, batch_size=7))), ours)


def test_radiotap_fcs_and_padding():
    """The FCS is not read as payload, whether captured or cut by the snaplen; DATAPAD headers are padded."""
    ours = load(WIFI / "radiotap.pcap")
    t = _tshark_flags(WIFI / "radiotap.pcap")
    assert t["badfcs"].sum() == 4 and np.all(ours["hdr"][t["badfcs"]] & HDR_TRUNC)
    mixed = load(WIFI / "wlan-mixed.pcapng")
    assert set(mixed["iface"].tolist()) == {0, 1, 2, 3, 4}
    for i in range(5):  # every kind of header in front of the 802.11 frame gives IP
        assert (mixed["l3"][mixed["iface"] == i] == 4).sum() >= 5
    cut = mixed["cap_len"] < mixed["wire_len"]
    assert cut.sum() > 5 and np.all(mixed["iface"][cut] == 0)


def test_malformed_frames_are_counted_not_raised():
    path = WIFI / "malformed.pcapng"
    ours = load(path)
    trunc = (ours["hdr"] & HDR_TRUNC) != 0
    # all but the intact frame of each interface, the one whose it_present chain overruns the
    # header (Flags unknown: read on without them) and the one of radiotap version 1 (read as
    # version 0), which tshark reads so too
    intact = [2, 4, 9, 14]
    assert np.flatnonzero(~trunc).tolist() == intact
    assert np.all(ours["l3"][intact] == 4) and np.all(ours["l3"][trunc] == 0)


def test_linktypes_are_supported():
    assert {105, 119, 127, 163, 192} <= SUPPORTED_LINKTYPES


def test_generator_reproduces_the_committed_fixtures(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_wifi_fixtures.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for p in CAPTURES:
        assert (tmp_path / p.name).read_bytes() == p.read_bytes(), p.name
