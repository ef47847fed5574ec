"""Alerts as a Zeek notice log (TSV, Zeek's own header), for Zeek tooling.

Columns and types are those of Zeek's notice.log, so zat, zeek-cut and
Zeek-aware SIEM parsers read it: ``note`` is ``FlowLSTM::<Kind>``, ``msg`` the
signature, score and the aggregate the alert stands for, ``sub`` the window,
``n`` how many alerts thresholding folded into this one.  Lines are appended whole, like the EVE file.
"""

from __future__ import annotations

import time
from typing import Any

from .outputs import EveFile

FIELDS = (
    "ts uid id.orig_h id.orig_p id.resp_h id.resp_p fuid file_mime_type file_desc proto note msg sub src dst "
    "p n peer_descr actions email_dest suppress_for remote_location.country_code remote_location.region "
    "remote_location.city remote_location.latitude remote_location.longitude"
).split()
TYPES = (
    "time string addr port addr port string string string enum enum string string addr addr port count string "
    "set[enum] set[string] interval string string string double double"
).split()
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _uid(flow_id: int) -> str:
    """Zeek-style connection uid ('C' + base62) from the EVE flow_id."""
    out = ""
    while flow_id:
        flow_id, r = divmod(flow_id, 62)
        out = _B62[r] + out
    return "C" + (out or "0")


def _field(v: object) -> str:
    s = str(v)
    return "(empty)" if s == "" else s.replace("\t", "\\x09").replace("\n", "\\x0a")


def _transport(proto: str) -> str:
    """Zeek's transport_proto enum: tcp, udp, icmp (ICMPv6 too) or unknown_transport; another
    value would make Zeek's own reader drop the line."""
    p = proto.lower().replace("ipv6-icmp", "icmp")
    return p if p in ("tcp", "udp", "icmp") else "unknown_transport"


def _members(md: dict[str, list[str]]) -> str:
    """'; 1200 flows, 1300 pkts from 10.0.0.0/8' for an alert that stands for an aggregate."""
    if "flowlstm_flows" not in md:
        return ""
    out = f"; {md['flowlstm_flows'][0]} flows, {md['flowlstm_pkts'][0]} pkts"
    return out + f" from {md['flowlstm_src_prefix'][0]} to {md['flowlstm_dest_prefix'][0]}"


def format_notices(records: list[dict[str, Any]], suppress_for: float = 60.0) -> bytes:
    """Zeek notice rows for EVE alert records, as whole lines (``suppress_for``: the thresholding period)."""
    lines = []
    for r in records:
        a = r["alert"]
        md = a.get("metadata", {})
        kind = md.get("flowlstm_kind", ["anomaly"])[0]
        sec = time.mktime(time.strptime(r["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        ts = sec + float("0" + r["timestamp"][19:26])
        # Zeek writes an ICMP flow's type and code where the ports go.
        sport, dport = (r.get("icmp_type", r.get("src_port", "-")), r.get("icmp_code", r.get("dest_port", "-")))
        row = [
            f"{ts:.6f}",
            _uid(r["flow_id"]),
            r["src_ip"],
            sport,
            r["dest_ip"],
            dport,
            "-",
            "-",
            "-",
            _transport(r["proto"]),
            f"FlowLSTM::{kind.capitalize()}",
            f"{a['signature']} (score {'/'.join(md.get('flowlstm_score', ['?']))}{_members(md)})",
            f"window {md.get('flowlstm_window', ['?'])[0]}",
            r["src_ip"],
            r["dest_ip"],
            dport,
            md.get("flowlstm_suppressed", ["-"])[0],
            "flowlstm",
            "Notice::ACTION_LOG",
            "",
            f"{suppress_for:.6f}",
            "-",
            "-",
            "-",
            "-",
            "-",
        ]
        lines.append("\t".join(_field(v) for v in row))
    return ("\n".join(lines) + "\n").encode() if lines else b""


class ZeekNoticeLog:
    """Append-only Zeek notice log; a new (or rotated) file starts with Zeek's header."""

    def __init__(self, path: str, suppress_for: float = 60.0):
        self.path = path
        self.suppress_for = suppress_for
        self._file = EveFile(path)
        self._header_if_new()

    def _header_if_new(self) -> None:
        import os

        if os.path.getsize(self.path) == 0:
            opened = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
            head = [
                "#separator \\x09",
                "#set_separator\t,",
                "#empty_field\t(empty)",
                "#unset_field\t-",
                "#path\tnotice",
                f"#open\t{opened}",
                "#fields\t" + "\t".join(FIELDS),
                "#types\t" + "\t".join(TYPES),
            ]
            self._file.write(("\n".join(head) + "\n").encode())

    def write(self, blob: bytes, kind: str = "event") -> None:
        self._file.write(blob)

    def write_alerts(self, records: list[dict[str, Any]]) -> None:
        self.write(format_notices(records, self.suppress_for))

    def reopen(self) -> None:
        self._file.reopen()
        self._header_if_new()

    def close(self) -> None:
        self._file.write(f"#close\t{time.strftime('%Y-%m-%d-%H-%M-%S', time.gmtime())}\n".encode())
        self._file.close()
