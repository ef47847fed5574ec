"""``flowlstm-sensor inspect``: a per-second summary of a capture."""

from __future__ import annotations

import argparse
import json
import sys

from .. import settings
from .common import EXIT_CODES, stream, values

NAME = "inspect"
SUMMARY = "per-second summary of a capture"
EPILOG = EXIT_CODES
HELP = """\
Read capture files (pcap or pcapng, optionally .gz/.xz/.bz2) and print one
line per second: packets, wire bytes, rate, active and new flows, distinct
sources and destinations, the share of SYN-only TCP packets, and the top
aggregated flow (AGURIM-style heavy hitter by bytes).

With --json, print one JSON object per second instead (a stable interface):
  ts          epoch second the line covers (UTC)
  packets     frames in that second, IP or not
  bytes       wire bytes of those frames
  flows       flows (bidirectional 5-tuples) with a packet in that second
  new_flows   flows that started in that second
  aggregates  [{"src", "dst", "bytes", "packets", "protocols"}], addresses
              written as aguri3 writes them: 1.2.3.4, 163.221.0.0/17, *

examples:
  flowlstm-sensor inspect --pcap /var/log/suricata/dump.pcap
  flowlstm-sensor inspect --pcap 201911211400.pcap.gz --json | jq .packets
"""


def register(p: argparse.ArgumentParser) -> None:
    settings.add_arguments(p, NAME)


def command(args: argparse.Namespace) -> int:
    from ..report import SecondTable, second_json

    v = values(args)
    out = sys.stdout
    table = None if v["json"] else SecondTable(out, top=v["top"])
    for res in stream(args, protocols=True):
        for rep in res.seconds:
            if table is None:
                out.write(json.dumps(second_json(rep), separators=(",", ":")) + "\n")
            else:
                table.row(rep)
    if table is not None:
        table.close()
    return 0
