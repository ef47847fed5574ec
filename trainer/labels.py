"""MAWILab v1.1 labels: reading them as the real files are, and matching packets.

CSV (``YYYYMMDD_anomalous_suspicious.csv``, ``YYYYMMDD_notice.csv``): the header
names ten columns (``anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy,
heuristic, distance, nbDetectors, label``) but every row carries nine — there
is no heuristic value — so rows are read by that documented layout; an older
variant ends every row with a comma.  An empty field is a wildcard; one
anomalyID spans several rows, one filter each; filters have no time bounds.

admd XML (``*_anomalous_suspicious.xml``, also what ``flowlstm-train inject``
writes): ``<anomaly type=… value=…>`` elements holding ``<slice>`` elements of
``<filter src_ip= src_port= dst_ip= dst_port= proto=/>`` and optional
``<from sec= usec=/>`` / ``<to sec= usec=/>`` time bounds.

anomalous and suspicious mean anomaly; benign and notice mean benign.  A filter
is directional (source → destination) as MAWILab's detectors report it; a
flow-second is anomalous when any of its packets matches an anomaly filter
within the anomaly's time bounds (the reply direction of such a flow is in
the same flow, so it is covered).
"""

from __future__ import annotations

import ipaddress
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from sensor.addresses import address_bytes, address_words
from sensor.errors import FlowlstmError
from sensor.flows import packet_ports, row_keys
from sensor.hashing import endpoint_order

ANOMALY_LABELS = {"anomalous": 1, "suspicious": 1, "benign": 0, "notice": 0}
CSV_HEADER = [
    "anomalyID",
    "srcIP",
    "srcPort",
    "dstIP",
    "dstPort",
    "taxonomy",
    "heuristic",
    "distance",
    "nbDetectors",
    "label",
]
_ROW_FIELDS = ["anomalyID", "srcIP", "srcPort", "dstIP", "dstPort", "taxonomy", "distance", "nbDetectors", "label"]
_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "gre": 47, "esp": 50, "sctp": 132}
NS = 1_000_000_000
# Which flow-seconds a label file reaches; part of what an extracted partition is a function
# of, so features labelled by older matching are extracted again.  2: ICMP flows (rows keyed
# by their type and code had matched none).
MATCHING = 2


class LabelError(FlowlstmError):
    """A label file cannot be read; the message names file and line."""

    exit_code = 65


@dataclass(frozen=True)
class Filter:
    """One MAWILab filter; None is a wildcard."""

    anomaly: int  # index into LabelSet.anomalies
    src: bytes | None  # 16-byte (IPv4-mapped) address
    sport: int | None
    dst: bytes | None
    dport: int | None
    proto: int | None


@dataclass(frozen=True)
class Anomaly:
    ident: str
    label: int  # 1 anomaly, 0 benign
    label_text: str
    taxonomy: str
    start_ns: int | None  # time bounds, when the file gives them
    end_ns: int | None
    source: str  # "file:line"


@dataclass
class LabelSet:
    anomalies: list[Anomaly]
    filters: list[Filter]

    def __len__(self) -> int:
        return len(self.anomalies)


def _addr(text: str, where: str) -> bytes | None:
    text = text.strip()
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise LabelError(f"{where}: '{text}' is not an IP address") from None
    return address_bytes(ip)


def _port(text: str, where: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > 65535:
        raise LabelError(f"{where}: '{text}' is not a port number")
    return int(text)


def _proto(text: str | None, where: str) -> int | None:
    if text is None or not text.strip():
        return None
    t = text.strip().lower()
    if t.isdigit() and int(t) < 256:
        return int(t)
    if t in _PROTOS:
        return _PROTOS[t]
    raise LabelError(f"{where}: unknown protocol '{text}'")


def _label(text: str, where: str) -> tuple[int, str]:
    t = text.strip().lower()
    if t not in ANOMALY_LABELS:
        raise LabelError(f"{where}: label '{text}' is not one of {', '.join(ANOMALY_LABELS)}")
    return ANOMALY_LABELS[t], t


def read_csv(path: str, into: LabelSet | None = None) -> LabelSet:
    """Read a MAWILab CSV label file (both the plain and the trailing-comma layout)."""
    out = into if into is not None else LabelSet([], [])
    ids: dict[str, int] = {}
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise LabelError(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        header = fh.readline()
        names = [h.strip() for h in header.rstrip("\n").split(",")]
        if names and names[-1] == "":
            names = names[:-1]
        if names != CSV_HEADER:
            raise LabelError(
                f"{path}:1: unexpected header {header.strip()!r}; expected MAWILab v1.1 columns {', '.join(CSV_HEADER)}"
            )
        for no, line in enumerate(fh, 2):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split(",")
            if len(fields) == len(_ROW_FIELDS) + 1 and fields[-1] == "":
                fields = fields[:-1]  # the trailing-comma variant
            where = f"{path}:{no}"
            if len(fields) != len(_ROW_FIELDS):
                raise LabelError(
                    f"{where}: {len(fields)} fields, MAWILab rows have {len(_ROW_FIELDS)} ({', '.join(_ROW_FIELDS)})"
                )
            row = dict(zip(_ROW_FIELDS, fields, strict=True))
            label, text = _label(row["label"], where)
            key = row["anomalyID"].strip()
            if key not in ids:
                ids[key] = len(out.anomalies)
                out.anomalies.append(Anomaly(key, label, text, row["taxonomy"].strip(), None, None, where))
            out.filters.append(
                Filter(
                    ids[key],
                    _addr(row["srcIP"], where),
                    _port(row["srcPort"], where),
                    _addr(row["dstIP"], where),
                    _port(row["dstPort"], where),
                    None,
                )
            )
    return out


def _bound(el: ET.Element | None, where: str) -> int | None:
    if el is None:
        return None
    try:
        return int(el.get("sec", "0")) * NS + int(el.get("usec", "0")) * 1000
    except ValueError:
        raise LabelError(f"{where}: bad time bound {ET.tostring(el, encoding='unicode').strip()}") from None


def read_xml(path: str, into: LabelSet | None = None) -> LabelSet:
    """Read an admd XML label file."""
    out = into if into is not None else LabelSet([], [])
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read: {exc.strerror}") from None
    except ET.ParseError as exc:
        raise LabelError(f"{path}:{exc.position[0]}: not well-formed XML: {exc}") from None
    for n, an in enumerate(root.iter(_local(root, "anomaly"))):
        where = f"{path}: anomaly #{n + 1}"
        label, text = _label(an.get("type", ""), where)
        taxonomy = an.get("taxonomy") or an.get("value") or ""
        start = _bound(an.find(_local(root, "from")), where)
        end = _bound(an.find(_local(root, "to")), where)
        idx = len(out.anomalies)
        out.anomalies.append(Anomaly(an.get("id", str(n)), label, text, taxonomy, start, end, where))
        for sl in an.iter(_local(root, "filter")):
            out.filters.append(
                Filter(
                    idx,
                    _addr(sl.get("src_ip", ""), where),
                    _port(sl.get("src_port", ""), where),
                    _addr(sl.get("dst_ip", ""), where),
                    _port(sl.get("dst_port", ""), where),
                    _proto(sl.get("proto"), where),
                )
            )
    return out


def _local(root: ET.Element, name: str) -> str:
    """The tag name in the document's namespace, if it uses one."""
    return root.tag.split("}")[0] + "}" + name if root.tag.startswith("{") else name


def load_labels(paths: list[str]) -> LabelSet:
    """Read any number of CSV/XML label files into one set."""
    out = LabelSet([], [])
    for p in paths:
        if not os.path.exists(p):
            raise LabelError(f"{p}: no such label file")
        (read_xml if p.lower().endswith(".xml") else read_csv)(p, out)
    return out


def match_packets(labels: LabelSet, packets: np.ndarray) -> np.ndarray:
    """Per packet, the index of the first anomaly (label 1) whose filter it matches, or -1."""
    out = np.full(len(packets), -1, dtype=np.int64)
    if len(packets) == 0 or not labels.filters:
        return out
    s_hi, s_lo = address_words(packets["src"])
    d_hi, d_lo = address_words(packets["dst"])
    ts = packets["ts"]
    for f in labels.filters:
        an = labels.anomalies[f.anomaly]
        if an.label != 1:
            continue
        m = out < 0
        if f.src is not None:
            w = np.frombuffer(f.src, ">u8")
            m &= (s_hi == w[0]) & (s_lo == w[1])
        if f.dst is not None:
            w = np.frombuffer(f.dst, ">u8")
            m &= (d_hi == w[0]) & (d_lo == w[1])
        if f.sport is not None:
            m &= packets["sport"] == f.sport
        if f.dport is not None:
            m &= packets["dport"] == f.dport
        if f.proto is not None:
            m &= packets["proto"] == f.proto
        if an.start_ns is not None:
            m &= ts >= an.start_ns
        if an.end_ns is not None:
            m &= ts <= an.end_ns
        out[m] = f.anomaly
    return out


def label_flow_seconds(labels: LabelSet, packets: np.ndarray, flow_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For one second: per flow row, whether any of its packets matched an anomaly, and its taxonomy.

    ``packets`` are the second's IP packets and ``flow_rows`` the sensor's
    ``FLOW_SECOND_DTYPE`` rows for them (sorted by flow_id).
    """
    is_anom = np.zeros(len(flow_rows), dtype=bool)
    taxonomy = np.full(len(flow_rows), "", dtype=object)
    hit = match_packets(labels, packets)
    if not (hit >= 0).any():
        return is_anom, taxonomy
    # Same canonical flow key as the sensor's flow table, for packets and rows alike.
    sport, dport = packet_ports(packets)
    m = hit >= 0
    p = packets[m]
    pk, _ = endpoint_order(p["src"], p["dst"], sport[m], dport[m], p["proto"])
    keys = row_keys(flow_rows)
    order = np.argsort(keys)
    pos = np.minimum(np.searchsorted(keys[order], pk), len(order) - 1)
    found = keys[order][pos] == pk
    rows = order[pos[found]]
    is_anom[rows] = True
    taxonomy[rows] = [labels.anomalies[a].taxonomy for a in hit[hit >= 0][found]]
    return is_anom, taxonomy


# Taxonomy → the anomaly classes of the evaluation, and → attack family.
# MAWILab's taxonomy (Mazel et al., 2014) names traffic patterns; the classes
# follow the usual anomaly-detection split:
#   point:      one flow is abnormal on its own (alpha flows, point-to-point DoS)
#   collective: only the set of flows is abnormal (scans, floods, DDoS, reflection)
#   contextual: abnormal only against the link's usual mix (multi-point patterns,
#               tunnels, unclassified heavy hitters)
_CLASS_PREFIXES = (
    (("ntsc", "sntsc", "posca", "ddos", "rflat", "flood", "scan"), "collective"),
    (("alphfl", "salphfl", "malphfl", "ptpdos", "point_to_point"), "point"),
)
_FAMILY_PREFIXES = (
    (("ntsc", "sntsc"), "network-scan"),
    (("posca",), "port-scan"),
    (("ddos", "ptpdos", "flood"), "dos"),
    (("rflat",), "reflection"),
    (("alphfl", "salphfl", "malphfl"), "alpha-flow"),
    (("mptp", "mptmp", "ptmp"), "multipoint"),
)


def _by_prefix(taxonomy: str, table: tuple[tuple[tuple[str, ...], str], ...], default: str) -> str:
    t = taxonomy.lower()
    return next((name for prefixes, name in table if t.startswith(prefixes)), default)


# The families of the corpus recipe (trainer/corpus.py), written as the taxonomy of what
# 'flowlstm-train corpus' injects, and the class of each.
CORPUS_CLASSES = {
    "amplification": "collective",
    "dhcp-flood": "collective",
    "ics-flood": "collective",
    "reflection": "collective",
    "scan": "collective",
    "synflood": "collective",
    "dos": "point",
    "ipv6-attack": "point",
    "teardrop": "point",
    "c2-beacon": "contextual",
    "cryptomining": "contextual",
    "dns-anomaly": "contextual",
    "dns-tunnel": "contextual",
    "malware-c2": "contextual",
    # trainer/synth.py's training-only shapes (its SYNTHETIC; named here, since synth imports labels)
    "synth-fanin": "collective",
    "synth-fanout": "collective",
    "synth-replies": "collective",
    "synth-malformed": "point",
    "synth-point": "point",
    "synth-beacon": "contextual",
}


def anomaly_class(taxonomy: str) -> str:
    """point, collective or contextual (see the table above and docs/labels.md)."""
    if taxonomy in CORPUS_CLASSES:
        return CORPUS_CLASSES[taxonomy]
    return _by_prefix(taxonomy, _CLASS_PREFIXES, "contextual")


def taxonomy_family(taxonomy: str) -> str:
    """The attack family a taxonomy belongs to, for leave-family-out evaluation."""
    if taxonomy in CORPUS_CLASSES:
        return taxonomy
    return _by_prefix(taxonomy, _FAMILY_PREFIXES, "other")
