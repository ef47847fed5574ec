"""Fixtures of the trainer's tests: one injected trace and its features, built once a session."""

from __future__ import annotations

import pytest

from trainer.cli import main as train_main

from ..conftest import ATTACKS, MAWI_PCAP


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """A MAWI background with a scan and a flood injected (MAWILab labels), and its windows
    extracted on local[2]: what the end-to-end and the cluster tests train from."""
    d = tmp_path_factory.mktemp("e2e")
    assert (
        train_main(
            [
                "inject",
                "--background",
                str(MAWI_PCAP),
                "--seed",
                "5",
                # Both attacks straddle the time split (the last 30% of the 78 s trace is held out).
                "--attack",
                f"{ATTACKS / 'zmap_tcp_5k.pcapng'}@40:0.01:ntscSYN:src=192.168.181.131",
                "--attack",
                f"{ATTACKS / 'pkt.TCP.synflood.spoofed.pcap'}@45:1:DDoSSYN:dst=10.10.10.10",
                "--out-pcap",
                str(d / "mix.pcap"),
                "--out-labels",
                str(d / "mix"),
            ]
        )
        == 0
    )
    assert (
        train_main(
            [
                "features",
                "--pcap",
                str(d / "mix.pcap"),
                "--labels",
                str(d / "mix.xml"),
                "--out",
                str(d / "feat"),
                "--master",
                "local[2]",
            ]
        )
        == 0
    )
    return d
