"""Alerts as a Zeek notice log: Zeek's own header, parsed by zat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from zat.log_to_dataframe import LogToDataFrame

from sensor.zeeklog import FIELDS, format_notices

from ..conftest import ATTACKS, DATA


def header(path, tag):
    return next(line for line in open(path) if line.startswith(tag))


def test_notice_log_matches_zeek_and_parses_with_zat(tmp_path):
    eve, notice = tmp_path / "eve.json", tmp_path / "notice.log"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sensor.cli",
            "run",
            "--no-progress",
            "--threshold",
            "0",
            "--limit",
            "5",
            "--alert-per",
            "flow",  # every flow kind, ICMP included, gets its own row
            "--corroborate",
            "0",  # at once: the capture is one second long
            "--pcap",
            str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap"),
            "--eve",
            str(eve),
            "--zeek-notice",
            str(notice),
        ],
        check=True,
        capture_output=True,
    )
    real = DATA / "zeek" / "ssh_sshguess.notice.log"  # written by Zeek itself
    for tag in ("#separator", "#fields", "#types", "#path"):
        assert header(notice, tag) == header(real, tag)
    alerts = [json.loads(x) for x in eve.read_text().splitlines() if '"event_type":"alert"' in x]
    df = LogToDataFrame().create_dataframe(str(notice))
    assert len(df) == len(alerts) > 5
    assert set(df["note"].astype(str)) <= {
        "FlowLSTM::Flood",
        "FlowLSTM::Scan",
        "FlowLSTM::Reflection",
        "FlowLSTM::Anomaly",
    }
    assert list(df["id.orig_h"].astype(str)) == [a["src_ip"] for a in alerts]
    # Zeek's convention for ICMP: type and code where the ports go.
    assert list(df["id.orig_p"].astype(int)) == [a.get("icmp_type", a.get("src_port")) for a in alerts]
    assert list(df["id.resp_p"].astype(int)) == [a.get("icmp_code", a.get("dest_port")) for a in alerts]
    assert any("icmp_type" in a for a in alerts)
    assert open(notice).read().rstrip("\n").splitlines()[-1].startswith("#close")


@pytest.mark.parametrize(
    ("eve", "zeek"), [("TCP", "tcp"), ("IPv6-ICMP", "icmp"), ("SCTP", "unknown_transport"), ("47", "unknown_transport")]
)
def test_proto_is_a_value_of_zeeks_transport_proto(eve, zeek):
    """Zeek's reader drops a line whose enum value its type lacks: GRE, SCTP, ESP... are unknown_transport."""
    rec = {
        "timestamp": "2019-11-21T05:00:26.000000+0000",
        "flow_id": 5,
        "src_ip": "10.0.0.1",
        "dest_ip": "10.0.0.2",
        "proto": eve,
        "alert": {"signature": "x", "metadata": {"flowlstm_kind": ["anomaly"], "flowlstm_score": ["0.9"]}},
    }
    row = format_notices([rec]).decode().rstrip("\n").split("\t")
    assert row[FIELDS.index("proto")] == zeek
