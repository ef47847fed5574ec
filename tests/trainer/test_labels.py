"""MAWILab label files as they really are, and packet matching."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from sensor.addresses import address_bytes
from sensor.capture import read_packets
from sensor.capture.records import ICMP_PROTOS
from sensor.flows import row_keys
from sensor.hashing import endpoint_order
from sensor.pipeline import PipelineConfig, run_files
from trainer.labels import (
    CSV_HEADER,
    LabelError,
    anomaly_class,
    label_flow_seconds,
    load_labels,
    match_packets,
    read_csv,
    read_xml,
    taxonomy_family,
)
from trainer.synth import SYNTHETIC

from ..conftest import DATA, MAWI_PCAP

CSV = DATA / "mawilab" / "20191121_anomalous_suspicious.csv"
TRAILING = DATA / "mawilab" / "sample_20191121_trailing-comma_variant.csv"


def test_real_csv_has_245_filters_of_173_anomalies():
    labels = read_csv(str(CSV))
    assert len(labels.filters) == 245 and len(labels.anomalies) == 173
    assert {a.label_text for a in labels.anomalies} == {"anomalous", "suspicious"}
    assert all(a.label == 1 for a in labels.anomalies)
    first = labels.anomalies[0]
    assert (first.ident, first.taxonomy) == ("0", "ipv4gretun")
    # anomaly 0 spans two rows: two filters, one anomaly
    assert sum(f.anomaly == 0 for f in labels.filters) == 2
    # empty fields are wildcards
    f = labels.filters[3]
    assert f.dst is None and f.sport is None and f.dport == 1433


def test_trailing_comma_variant_reads_the_same():
    a, b = read_csv(str(CSV)), read_csv(str(TRAILING))
    assert a.filters == b.filters
    assert [(x.ident, x.label, x.taxonomy) for x in a.anomalies] == [
        (x.ident, x.label, x.taxonomy) for x in b.anomalies
    ]


@pytest.mark.parametrize(
    "line,message",
    [
        ("0,1.2.3.4,,5.6.7.8,,mptp,0.1,3", r"bad\.csv:2: 8 fields, MAWILab rows have 9"),
        ("0,1.2.3.400,,5.6.7.8,,mptp,0.1,3,anomalous", r"bad\.csv:2: '1\.2\.3\.400' is not an IP address"),
        ("0,1.2.3.4,99999,5.6.7.8,,mptp,0.1,3,anomalous", r"bad\.csv:2: '99999' is not a port number"),
        ("0,1.2.3.4,,5.6.7.8,,mptp,0.1,3,weird", r"bad\.csv:2: label 'weird'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV.read_text().splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(LabelError, match=message):
        read_csv(str(bad))


def test_unknown_header_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,src,dst\n1,2,3\n")
    with pytest.raises(LabelError, match=r"bad\.csv:1: unexpected header"):
        read_csv(str(bad))


def test_bonafide_excerpt_has_no_labelled_packets():
    """The excerpt's authors removed every packet matching that day's anomalous/suspicious rules."""
    labels = read_csv(str(CSV))
    packets = np.concatenate(list(read_packets(MAWI_PCAP)))
    assert (match_packets(labels, packets) >= 0).sum() == 0


def test_xml_time_bounds_and_proto(tmp_path):
    # A hand-written admd sample in the element layout MAWILab documents (not a real file).
    x = tmp_path / "l.xml"
    packets = np.concatenate(list(read_packets(MAWI_PCAP)))
    p = packets[0]
    src = ".".join(str(b) for b in p["src"][12:])
    t = int(p["ts"]) // 1_000_000_000
    x.write_text(f'''<admd><anomaly type="suspicious" value="mptp">
      <slice><filter src_ip="{src}" proto="tcp"/></slice>
      <from sec="{t}" usec="0"/><to sec="{t + 1}" usec="0"/></anomaly>
      <anomaly type="notice" value="mptp"><slice><filter src_ip="{src}"/></slice></anomaly></admd>''')
    labels = read_xml(str(x))
    assert [a.label for a in labels.anomalies] == [1, 0]
    hit = match_packets(labels, packets)
    from_src = np.all(packets["src"] == p["src"], axis=1)
    in_time = (packets["ts"] >= t * 10**9) & (packets["ts"] <= (t + 1) * 10**9)
    assert ((hit == 0) == (from_src & in_time & (packets["proto"] == 6))).all()
    assert from_src.sum() > (hit == 0).sum() > 0  # the time bound cut some


def test_load_labels_reports_missing_files(tmp_path):
    with pytest.raises(LabelError, match="no such label file"):
        load_labels([str(tmp_path / "nope.csv")])


def test_taxonomy_mapping():
    assert anomaly_class("ntscSYN") == "collective" and taxonomy_family("ntscSYN") == "network-scan"
    assert anomaly_class("DDoSSYN") == "collective" and taxonomy_family("DDoSSYN") == "dos"
    assert anomaly_class("alphflHTTP") == "point"
    assert anomaly_class("mptp") == "contextual" and taxonomy_family("mptmp") == "multipoint"


def test_synthetic_families_have_their_class_and_are_their_own_family():
    # they were reported as "contextual" and pooled as family "other" before
    for name in SYNTHETIC:
        # malformed packets and one source's flood are not shapes of many; a beacon is one only over minutes
        single = {"synth-malformed": "point", "synth-point": "point", "synth-beacon": "contextual"}
        expected = single.get(name, "collective")
        assert anomaly_class(name) == expected and taxonomy_family(name) == name


def test_load_labels_merges_files():
    both = load_labels([str(CSV), str(TRAILING)])
    assert len(both.anomalies) == 2 * 173 and len(both.filters) == 2 * 245


def test_icmp_and_port_flows_of_labelled_hosts_are_labelled(tmp_path):
    """Every flow-second with a packet from a labelled host is labelled, ICMP ones included.

    The flow rows carry an ICMP flow's type and code where ports go; matching them by those
    columns labelled no ICMP flow at all (ICMPv6 attacks, ping sweeps, unreachables).
    """
    # nmap.pcapng: the scanner .141, and the gateway .1 whose ICMP unreachables answer its UDP probes
    hosts = ["192.168.181.141", "192.168.181.1"]
    csv = tmp_path / "l.csv"
    csv.write_text(
        ",".join(CSV_HEADER) + "\n" + "".join(f"{i},{h},,,,ntscUDP,0,1,anomalous\n" for i, h in enumerate(hosts))
    )
    labels = load_labels([str(csv)])
    want = np.stack([np.frombuffer(address_bytes(ipaddress.ip_address(h)), np.uint8) for h in hosts])
    seen = {"icmp": 0, "other": 0}

    def check(sec, packets, rows):
        is_anom, _ = label_flow_seconds(labels, packets, rows)
        sent = packets[(packets["src"][:, None, :] == want[None]).all(axis=2).any(axis=1)]
        sent_keys, _ = endpoint_order(sent["src"], sent["dst"], sent["sport"], sent["dport"], sent["proto"])
        assert (is_anom == np.isin(row_keys(rows), sent_keys)).all(), sec
        icmp = np.isin(rows["proto"], ICMP_PROTOS)
        seen["icmp"] += int((is_anom & icmp).sum())
        seen["other"] += int((is_anom & ~icmp).sum())

    for _ in run_files([str(DATA / "attacks" / "nmap.pcapng")], PipelineConfig(), check):
        pass
    assert seen["icmp"] > 100 and seen["other"] > 500, seen
