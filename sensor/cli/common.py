"""What the subcommands share: exit codes, settings from the command line, the feature stream."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from typing import Any

from .. import settings
from ..config import pipeline_config, resolve
from ..pipeline import FeaturePipeline, PipelineOutput
from ..progress import FileProgress

log = logging.getLogger("flowlstm.cli")

EXIT_CODES = """\
exit status:
  0   success
  64  bad command line (EX_USAGE)
  65  damaged capture file; packets before the damage were processed (EX_DATAERR)
  66  capture file missing, unreadable or not a capture (EX_NOINPUT)
  73  output cannot be written (EX_CANTCREAT)
  78  invalid configuration or model bundle (EX_CONFIG)
  130 interrupted
"""


def values(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting: defaults, then ``--config`` (if the command has it), then the command line."""
    given = settings.given(args)
    return resolve(given.get("config") or None, given)


def stream(args: argparse.Namespace, protocols: bool = False) -> Iterator[PipelineOutput]:
    """The feature path over ``--pcap`` with a progress bar; yields each ``PipelineOutput``."""
    v = values(args)
    pipe = FeaturePipeline(pipeline_config(v, protocols))
    with FileProgress(v["pcap"], enabled=v["progress"]) as progress:
        for _, batch in progress.batches():
            yield pipe.push(batch)
    yield pipe.finish()
    if pipe.late_packets:
        log.warning("%d packets arrived later than --slack allows and were not counted", pipe.late_packets)
