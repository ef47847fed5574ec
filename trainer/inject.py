"""``flowlstm-train inject``: mix real attack captures into a background trace, with labels.

Each attack capture is shifted to start ``offset`` seconds after the
background's first packet and replayed at ``rate`` times its recorded speed
(timestamps are scaled around the attack's first packet; no packet is added
or dropped).  Private and reserved IPv4 addresses in the attack (lab hosts such
as 192.168.181.140 or 10.10.10.10) are remapped, one to one, onto addresses the
background actually uses, so the attack lands among real hosts; global
addresses (spoofed sources, reflectors, scan targets on the Internet) are kept.
The IPv4 header checksum is recomputed after remapping; TCP/UDP checksums are
left as they were (the sensor does not read them).

The merged trace is a nanosecond Ethernet pcap in time order; frames of other
link types get an Ethernet header.  What was injected is written as MAWILab
labels — CSV in the real nine-field row layout and admd XML with <from>/<to>
bounds — so mixed data goes through the same label path as MAWILab itself.
Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sensor.capture.files import CaptureReader
from sensor.capture.linklayer import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
)
from sensor.errors import UsageError

from .labels import CSV_HEADER, NS

log = logging.getLogger("flowlstm.inject")

_L3_OFFSET = {
    LINKTYPE_ETHERNET: 14,
    LINKTYPE_LINUX_SLL: 16,
    LINKTYPE_LINUX_SLL2: 20,
    LINKTYPE_NULL: 4,
    LINKTYPE_LOOP: 4,
}


@dataclass(frozen=True)
class AttackSpec:
    """One capture to inject: ``path@offset[:rate][:taxonomy][:match]``.

    ``match`` names the ground truth: ``src=IP[+IP…]`` (attacker sources) or
    ``dst=IP`` (the victim of a flood or reflection), in the capture's own
    addresses; labels are written for the remapped ones.
    """

    path: str
    offset: float
    rate: float = 1.0
    taxonomy: str = "anomaly"
    match_role: str = "dst"
    match_addrs: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AttackSpec:
        if "@" not in text:
            raise UsageError(f"attack '{text}': expected PATH@OFFSET[:RATE][:TAXONOMY][:src=IP|dst=IP]")
        path, rest = text.rsplit("@", 1)
        parts = rest.split(":")
        try:
            offset = float(parts[0])
            rate = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
        except ValueError:
            raise UsageError(f"attack '{text}': offset and rate must be numbers") from None
        if offset < 0 or rate <= 0:
            raise UsageError(f"attack '{text}': offset must be >= 0 and rate > 0")
        taxonomy = parts[2] if len(parts) > 2 and parts[2] else "anomaly"
        role = "dst"
        addrs: tuple[str, ...] = ()
        if len(parts) > 3 and parts[3]:
            role, _, ips = parts[3].partition("=")
            if role not in ("src", "dst") or not ips:
                raise UsageError(f"attack '{text}': match must be src=IP[+IP...] or dst=IP")
            addrs = tuple(ips.split("+"))
            for a in addrs:
                try:
                    ipaddress.ip_address(a)
                except ValueError:
                    raise UsageError(f"attack '{text}': '{a}' is not an IP address") from None
        return cls(path, offset, rate, taxonomy, role, addrs)


def _read(path: str) -> tuple[np.ndarray, np.ndarray, list[bytes], np.ndarray]:
    """All packets of a capture: ts (ns), wire length, Ethernet frame bytes, l3 offset in the frame.

    Offline tool code: one Python object per packet is fine here.
    """
    reader = CaptureReader(path)
    ts: list[np.ndarray] = []
    wire: list[int] = []
    frames: list[bytes] = []
    l3: list[int] = []
    for batch in reader:
        fr = reader.last_frames
        assert fr is not None  # set with every batch the reader yields
        for i in range(len(batch)):
            lt = int(fr.linktype[i])
            start = int(fr.data[i])
            raw = bytes(fr.buf[start : start + int(batch["cap_len"][i])])
            w = int(batch["wire_len"][i])
            if lt == LINKTYPE_ETHERNET:
                frames.append(raw)
                l3.append(_ether_l3(raw))
            else:
                # Give the packet an Ethernet header so the output has one link type.
                cut = _L3_OFFSET.get(lt, 0)
                et = b"\x86\xdd" if int(batch["l3"][i]) == 6 else b"\x08\x00"
                frames.append(bytes(12) + et + raw[cut:])
                l3.append(14)
                w += 14 - cut
            wire.append(w)
        ts.append(batch["ts"])
    if not frames:
        raise UsageError(f"{path}: no packets")
    return np.concatenate(ts), np.array(wire, dtype=np.int64), frames, np.array(l3)


def _ether_l3(frame: bytes) -> int:
    off = 14
    et = frame[12:14]
    while et in (b"\x81\x00", b"\x88\xa8", b"\x91\x00") and len(frame) >= off + 4:
        et = frame[off + 2 : off + 4]
        off += 4
    return off


def _ipv4_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header[: len(header) // 2 * 2]))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _remap_frame(frame: bytes, l3: int, mapping: dict[bytes, bytes]) -> bytes:
    if len(frame) < l3 + 20 or frame[l3] >> 4 != 4:
        return frame
    src, dst = frame[l3 + 12 : l3 + 16], frame[l3 + 16 : l3 + 20]
    new_src, new_dst = mapping.get(src, src), mapping.get(dst, dst)
    if (new_src, new_dst) == (src, dst):
        return frame
    ihl = (frame[l3] & 0x0F) * 4
    hdr = bytearray(frame[l3 : l3 + ihl])
    hdr[12:16], hdr[16:20] = new_src, new_dst
    hdr[10:12] = b"\x00\x00"
    if len(hdr) == ihl:
        hdr[10:12] = _ipv4_checksum(bytes(hdr)).to_bytes(2, "big")
    return frame[:l3] + bytes(hdr) + frame[l3 + ihl :]


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def is_group(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A multicast group, the limited broadcast or the unspecified address: no host of its own.
    Remapped onto a host, a DHCP flood to 255.255.255.255 would become a unicast one."""
    return ip.is_multicast or ip.is_unspecified or ip == _BROADCAST


def _is_group(addr: bytes) -> bool:
    return is_group(ipaddress.IPv4Address(addr))


def _is_local(addr: bytes) -> bool:
    """A lab or LAN host (not an Internet one, not a group): what remapping moves."""
    return not ipaddress.IPv4Address(addr).is_global and not _is_group(addr)


def _ipv4s_of(frames: list[bytes], l3: np.ndarray) -> list[tuple[bytes, bytes]]:
    out = []
    for f, o in zip(frames, l3.tolist(), strict=True):
        if len(f) >= o + 20 and f[o] >> 4 == 4:
            out.append((f[o + 12 : o + 16], f[o + 16 : o + 20]))
        else:
            out.append((b"", b""))
    return out


def inject(
    background: str,
    attacks: list[AttackSpec],
    out_pcap: str,
    out_csv: str,
    out_xml: str,
    seed: int = 0,
    remap: bool = True,
    pool: str = "global",
    clip: bool = False,
) -> dict[str, Any]:
    """Write the merged capture and its labels; return a summary of what was injected.

    ``pool`` is where remapped attack hosts land: "global" (the background's Internet hosts,
    as on a backbone like MAWI's) or "any" (every IPv4 host it has, a site's own included).
    With ``clip``, attack packets after the background's last one are left out, so the mix
    is the background's length.
    """
    if pool not in ("global", "any"):
        raise UsageError(f"pool must be 'global' or 'any', not {pool!r}")
    rng = np.random.default_rng(seed)
    bts, bwire, bframes, bl3 = _read(background)
    t0, t_end = int(bts.min()), int(bts.max())
    hosts = {a for pair in _ipv4s_of(bframes, bl3) for a in pair if a and not _is_group(a)}
    pool_hosts = sorted(hosts if pool == "any" else {a for a in hosts if not _is_local(a)})
    used: set[bytes] = set()
    all_ts, all_wire, all_frames = [bts], [bwire], list(bframes)
    anomalies: list[dict[str, Any]] = []
    for k, spec in enumerate(attacks):
        ats, awire, aframes, al3 = _read(spec.path)
        start = int(ats.min())
        new_ts = t0 + int(spec.offset * NS) + ((ats - start) / spec.rate).astype(np.int64)
        if clip:
            keep = new_ts <= t_end
            if not keep.any():
                raise UsageError(f"{spec.path}: starts after the background ends; lower its offset")
            idx = np.flatnonzero(keep)
            new_ts, awire, al3 = new_ts[idx], awire[idx], al3[idx]
            aframes = [aframes[i] for i in idx.tolist()]
        pairs = _ipv4s_of(aframes, al3)
        mapping: dict[bytes, bytes] = {}
        if remap and not pool_hosts:
            log.warning("%s: no IPv4 hosts to remap %s's onto; its own addresses are kept", background, spec.path)
        elif remap:
            local = sorted({a for p in pairs for a in p if a and _is_local(a)})
            for a in local:
                choices = [p for p in pool_hosts if p not in used] or pool_hosts
                pick = choices[int(rng.integers(len(choices)))]
                mapping[a] = pick
                used.add(pick)
            aframes = [_remap_frame(f, o, mapping) for f, o in zip(aframes, al3.tolist(), strict=True)]
        targets = [_remapped(a, mapping) for a in spec.match_addrs]
        if not targets:
            targets = [_dominant(pairs, mapping, spec.match_role)]
        anomalies.append(
            {
                "id": k,
                "taxonomy": spec.taxonomy,
                "role": spec.match_role,
                "addresses": [str(t) for t in targets],
                "from": int(new_ts.min()),
                "to": int(new_ts.max()),
                "packets": len(aframes),
                "source": os.path.basename(spec.path),
                "remapped": {str(ipaddress.IPv4Address(a)): str(ipaddress.IPv4Address(b)) for a, b in mapping.items()},
            }
        )
        all_ts.append(new_ts)
        all_wire.append(awire)
        all_frames += aframes
    ts = np.concatenate(all_ts)
    wire = np.concatenate(all_wire)
    order = np.argsort(ts, kind="stable")
    _write_pcap(out_pcap, ts[order], wire[order], [all_frames[i] for i in order.tolist()])
    write_labels(out_csv, out_xml, anomalies)
    return {"packets": len(ts), "background": len(bts), "injected": anomalies}


def write_labels(out_csv: str | Path, out_xml: str | Path, anomalies: list[dict[str, Any]]) -> None:
    """MAWILab CSV and admd XML labels of ``anomalies`` (id, taxonomy, role, addresses, from, to
    in ns), as ``inject`` writes them for what it injected."""
    _write_csv(out_csv, anomalies)
    _write_xml(out_xml, anomalies)


def _remapped(addr: str, mapping: dict[bytes, bytes]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv4Address(mapping.get(ip.packed, ip.packed))
    return ip  # IPv6 attacks keep their addresses


def _dominant(pairs: list[tuple[bytes, bytes]], mapping: dict[bytes, bytes], role: str) -> ipaddress.IPv4Address:
    idx = 0 if role == "src" else 1
    counts: dict[bytes, int] = {}
    for p in pairs:
        if p[idx]:
            counts[p[idx]] = counts.get(p[idx], 0) + 1
    best = max(sorted(counts), key=counts.__getitem__)
    return ipaddress.IPv4Address(mapping.get(best, best))


def _write_pcap(path: str, ts: np.ndarray, wire: np.ndarray, frames: list[bytes]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, LINKTYPE_ETHERNET))
        for t, w, fr in zip(ts.tolist(), wire.tolist(), frames, strict=True):
            f.write(struct.pack("<IIII", t // NS, t % NS, len(fr), max(w, len(fr))))
            f.write(fr)
    os.replace(tmp, path)


def _filters(a: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for addr in a["addresses"]:
        yield (addr, "") if a["role"] == "src" else ("", addr)


def _write_csv(path: str | Path, anomalies: list[dict[str, Any]]) -> None:
    lines = [", ".join(CSV_HEADER)]
    for a in anomalies:
        for src, dst in _filters(a):
            # The real files' nine-field rows: no heuristic value.
            lines.append(f"{a['id']},{src},,{dst},,{a['taxonomy']},0,1,anomalous")
    Path(path).write_text("\n".join(lines) + "\n")


def _write_xml(path: str | Path, anomalies: list[dict[str, Any]]) -> None:
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<admd>"]
    for a in anomalies:
        out.append(f'  <anomaly id="{a["id"]}" type="anomalous" value="{a["taxonomy"]}">')
        for src, dst in _filters(a):
            attrs = f'src_ip="{src}"' if src else f'dst_ip="{dst}"'
            out.append(f"    <slice><filter {attrs}/></slice>")
        out.append(f'    <from sec="{a["from"] // NS}" usec="{a["from"] % NS // 1000}"/>')
        # The bound is inclusive; round the end up to the next microsecond.
        end = -(-a["to"] // 1000) * 1000
        out.append(f'    <to sec="{end // NS}" usec="{end % NS // 1000}"/>')
        out.append("  </anomaly>")
    out.append("</admd>")
    Path(path).write_text("\n".join(out) + "\n")
