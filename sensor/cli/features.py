"""``flowlstm-sensor features``: the model's feature windows of a capture, to Parquet."""

from __future__ import annotations

import argparse

from .. import settings
from .common import EXIT_CODES, log, stream, values

NAME = "features"
SUMMARY = "write feature windows to Parquet"
EPILOG = EXIT_CODES
HELP = """\
Run the feature path over capture files (in order, as one stream) and write
every feature window to a Parquet file: one row per window, i.e. per flow and
per second t in which the flow sent a packet, holding [t-1, t, t+1] rows of
the versioned feature schema (stored in the file's metadata) plus the flow's
key and counters.  This is exactly what the model scores and the trainer
learns from.

examples:
  flowlstm-sensor features --pcap trace.pcap.gz --out trace.parquet
  flowlstm-sensor features --pcap a.pcap b.pcap --out ab.parquet --idle-timeout 60
"""


def register(p: argparse.ArgumentParser) -> None:
    settings.add_arguments(p, NAME)


def command(args: argparse.Namespace) -> int:
    from ..parquet import WindowWriter

    out = values(args)["out"]
    with WindowWriter(out) as writer:
        for res in stream(args):
            for w in res.windows:
                writer.write(w)
        log.info("wrote %d windows to %s", writer.rows, out)
    return 0
