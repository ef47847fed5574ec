# Stub for the C extension sensor/capture/_walk.c; keep in step with its PyArg_ParseTuple formats and constants.
import numpy as np

NEED_MORE: int
FULL: int
CORRUPT: int
SECTION: int

def walk_pcap(
    buf: bytes, pos: int, end: int, swapped: bool, max_caplen: int, offsets: np.ndarray, /
) -> tuple[int, int, int]: ...
def walk_pcapng(
    buf: bytes, pos: int, end: int, big_endian: bool, max_len: int, offsets: np.ndarray, types: np.ndarray, /
) -> tuple[int, int, int]: ...
