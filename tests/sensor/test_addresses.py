"""The 16-byte address forms: text round trips, against Python's ipaddress."""

from __future__ import annotations

import ipaddress

import numpy as np

from sensor.addresses import address_bytes, format_addresses, parse_addresses


def test_text_and_bytes_round_trip_for_both_families():
    text = np.array(["192.0.2.1", "2001:db8::1", "192.0.2.1", "::ffff:0:1", "::", "0.0.0.0"], dtype=object)
    packed = parse_addresses(text)
    assert packed.shape == (6, 16) and packed.dtype == np.uint8
    assert [bytes(r) for r in packed] == [address_bytes(ipaddress.ip_address(a)) for a in text]
    # ::ffff:0:1 is IPv4-mapped, so it reads back as the IPv4 address it maps.
    assert format_addresses(packed).tolist() == ["192.0.2.1", "2001:db8::1", "192.0.2.1", "0.0.0.1", "::", "0.0.0.0"]
    assert parse_addresses(np.zeros(0, dtype=object)).shape == (0, 16)
