"""One error hierarchy for flowlstm, caught once in each ``main()``.

Each class carries the process exit code it maps to (sysexits.h values, so
that init systems and scripts can tell a bad config from a bad input file).
"""

from __future__ import annotations


class FlowlstmError(Exception):
    """Base of every error flowlstm reports to the user as one line."""

    exit_code = 1


class UsageError(FlowlstmError):
    """The command line asks for something impossible."""

    exit_code = 64  # EX_USAGE


class CaptureError(FlowlstmError):
    """A capture source cannot be opened or read."""

    exit_code = 66  # EX_NOINPUT


class CorruptCaptureError(CaptureError):
    """A capture file is damaged at a known place; everything before it was delivered."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, path: str, offset: int, reason: str, compressed: bool = False):
        where = "uncompressed byte offset" if compressed else "byte offset"
        super().__init__(f"{path}: {reason} at {where} {offset}")
        self.path = path
        self.offset = offset
        self.reason = reason


class ConfigError(FlowlstmError):
    """A configuration value is invalid; the message names the key and the fix."""

    exit_code = 78  # EX_CONFIG


class OutputError(FlowlstmError):
    """An output cannot be written (disk full, permission, missing directory)."""

    exit_code = 73  # EX_CANTCREAT
