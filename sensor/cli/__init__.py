"""``flowlstm-sensor``: the sensor's command line, one module per subcommand.

Each subcommand module (suricata-update's shape) has ``NAME``, ``HELP``,
``register(parser)`` and ``command(args)``; their options come from the
settings table (``sensor/settings.py``).  Every error flowlstm knows about is a
``FlowlstmError``; ``main()`` catches it once, prints one line and exits with
the code the error class names.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import FlowlstmError, UsageError
from ..systemd import error_prefix, setup_logging
from . import calibrate, features, inspect, run
from .common import EXIT_CODES

COMMANDS = (run, calibrate, inspect, features)

MAIN_HELP = f"""\
flowlstm-sensor turns packet headers into per-second flow statistics,
AGURIM-style aggregated flows and three-second feature windows [t-1, t, t+1],
the input of flowlstm's LSTM anomaly model.

commands:
  run        score capture files or a live interface and append EVE-JSON alerts
  calibrate  fit a model bundle's thresholds to this site's benign traffic
  inspect    per-second summary of a capture: volume, flows, heavy hitters
  features   write the model's feature windows of a capture to Parquet

Run 'flowlstm-sensor COMMAND --help' for a command's options.

{EXIT_CODES}"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a ``UsageError`` (one line, exit 64)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = ArgumentParser(prog="flowlstm-sensor", description=MAIN_HELP, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"flowlstm-sensor {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for mod in COMMANDS:
        p = sub.add_parser(mod.NAME, help=mod.SUMMARY, description=mod.HELP, epilog=mod.EPILOG, formatter_class=fmt)
        mod.register(p)
        p.set_defaults(handler=mod.command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        setup_logging("flowlstm-sensor", args.verbose)
        if not args.command:
            build_parser().print_help()
            return 64
        return int(args.handler(args))
    except FlowlstmError as exc:
        # Under systemd at LOG_ERR: a refused 'systemctl reload' is an error in the journal.
        print(f"{error_prefix()}flowlstm-sensor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head); say nothing, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
