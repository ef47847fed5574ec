"""The packet-header record: the one batch type every capture backend produces.

A batch is a numpy structured array of ``PACKET_DTYPE``; nothing downstream sees
per-packet Python objects.  Addresses are 16 bytes: IPv6 as is, IPv4 as the
IPv4-mapped IPv6 form ``::ffff:a.b.c.d`` (see ``sensor.addresses``).
"""

from __future__ import annotations

import numpy as np

PACKET_DTYPE = np.dtype(
    [
        ("ts", "<i8"),  # capture time, ns since the Unix epoch (UTC)
        ("src", "u1", (16,)),  # IPv6, or IPv4-mapped IPv6 for IPv4
        ("dst", "u1", (16,)),
        ("sport", "<u2"),  # 0 when the transport header is absent
        ("dport", "<u2"),
        ("wire_len", "<u4"),  # frame length on the wire (pcap orig_len)
        ("cap_len", "<u4"),  # bytes captured
        ("ip_len", "<u4"),  # IPv4 total length / IPv6 payload length + 40; 0 if not IP
        ("l3", "u1"),  # 4, 6, or 0 for non-IP / unparsable
        ("proto", "u1"),  # transport protocol after IPv6 extension headers
        ("ttl", "u1"),  # IPv4 TTL / IPv6 hop limit
        ("tcp_flags", "<u2"),  # 9 bits, see TCP_* below
        ("tcp_win", "<u2"),
        ("icmp_type", "u1"),
        ("icmp_code", "u1"),
        ("frag", "u1"),  # FRAG_* bits
        ("frag_off", "<u2"),  # fragment offset in 8-byte units
        ("frag_id", "<u4"),  # a fragment's IP identification (IPv4 16 bits, IPv6 32); 0 if none
        ("hdr", "u1"),  # HDR_* bits: which headers were captured whole
        ("iface", "<u2"),  # pcapng interface id / capture source index
    ]
)

ICMP_PROTOS = (1, 58)  # ICMP, ICMPv6: no ports; the records carry type and code instead
PORT_PROTOS = (6, 17, 33, 132, 136)  # TCP, UDP, DCCP, SCTP, UDP-Lite: ports lead their header

# tcp_flags bits: the flags byte of the TCP header plus NS (RFC 3540) as bit 8.
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR, TCP_NS = (1 << i for i in range(9))
TCP_FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns")

FRAG_MF = 1  # more fragments follow
FRAG_DF = 2  # IPv4 don't-fragment
FRAG_FRAGMENT = 4  # the packet is a fragment (MF set or offset > 0, or IPv6 fragment header)
FRAG_NONFIRST = 8  # offset > 0: no transport header in this packet

HDR_L3 = 1  # the IP header was captured whole
HDR_L4 = 2  # the transport header's ports (or ICMP type/code) were captured
HDR_TRUNC = 4  # the snaplen cut into a header we wanted
HDR_OPTIONS = 8  # IPv4 options, or an IPv6 extension header other than a fragment header
