"""Community ID v1 (Corelight's flow hash, as Suricata and Zeek write it).

``1:`` + base64(SHA-1(seed ‖ src ‖ dst ‖ proto ‖ 0 ‖ sport ‖ dport)), with the
endpoints ordered so both directions of a flow hash alike.  ICMP and ICMPv6
carry type and code in the port fields; request/response types map to their
counterpart (so an echo and its reply share an ID), other types are one-way and
never reordered.  Computed per alert, not per packet.
"""
from __future__ import annotations

import base64
import hashlib
import struct

# Request/response pairs, for ICMP (RFC 792/950) and ICMPv6 (RFC 4443/4861/2710/3810).
_ICMP_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 144: 145,
                145: 144, 139: 140, 140: 139}
_PORTED = (6, 17, 132)  # TCP, UDP, SCTP carry real ports
_MAPPED_V4 = bytes(10) + b"\xff\xff"


def _addr(a: bytes) -> bytes:
    """Our 16-byte form → the 4- or 16-byte address the hash covers."""
    return a[12:] if a[:12] == _MAPPED_V4 else a


def community_id(src: bytes, dst: bytes, sport: int, dport: int, proto: int, seed: int = 0,
                 ports: bool = True) -> str:
    """Community ID v1 of a flow; ``src``/``dst`` are 16-byte (IPv4-mapped) addresses.

    For ICMP/ICMPv6 pass type as ``sport`` and code as ``dport``.  ``ports=False``
    when the packet's transport header is not known (cut short, a non-first
    fragment): the hash then covers addresses and protocol only, as tshark does.
    """
    s, d = _addr(bytes(src)), _addr(bytes(dst))
    one_way = False
    has_ports = ports and (proto in _PORTED or proto in (1, 58))
    if has_ports and proto in (1, 58):
        pairs = _ICMP_PAIRS if proto == 1 else _ICMP6_PAIRS
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    flip = (not one_way and (d, dport) < (s, sport)) if has_ports else d < s
    if flip:
        s, d, sport, dport = d, s, dport, sport
    data = struct.pack("!H", seed) + s + d + struct.pack("!BB", proto, 0)
    if has_ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
