"""Bounded fuzzing of the reader: damaged real captures yield records or one CaptureError, never anything else."""
from __future__ import annotations

import subprocess

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor.capture import read_packets
from sensor.capture.records import PACKET_DTYPE
from sensor.errors import CaptureError

from ..conftest import DATA

FTP = DATA / "zeek" / "ftp_bruteforce.pcap"
SEEDS = {
    "pcap": FTP.read_bytes()[:6000],
    "pcapng": subprocess.run(["editcap", "-F", "pcapng", str(FTP), "-"], capture_output=True,
                             check=True).stdout[:6000],
}


def consume(tmp_path, data: bytes) -> None:
    f = tmp_path / "fuzz.bin"
    f.write_bytes(data)
    try:
        for batch in read_packets(f, batch_size=64):
            assert batch.dtype == PACKET_DTYPE
            assert np.all(batch["cap_len"] <= 262144)
            assert np.all(np.isin(batch["l3"], (0, 4, 6)))
    except CaptureError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 5999), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.integers(0, 6000),
    linktype=st.sampled_from([None, 0, 1, 12, 101, 108, 113, 228, 229, 276, 999]),
)
def test_mutated_captures_never_crash(tmp_path, kind, edits, cut, linktype):
    data = bytearray(SEEDS[kind])
    for pos, val in edits:
        data[pos] = val
    if linktype is not None and kind == "pcap":
        data[20:24] = linktype.to_bytes(4, "little")
    consume(tmp_path, bytes(data[:cut] if cut > 24 else data))
