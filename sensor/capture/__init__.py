"""Capture stage: every source yields numpy batches of ``PACKET_DTYPE`` records."""

from .files import CaptureReader, read_packets
from .records import PACKET_DTYPE

__all__ = ["CaptureReader", "PACKET_DTYPE", "read_packets"]
