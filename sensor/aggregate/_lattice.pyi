# Stub for the C extension sensor/aggregate/_lattice.c; keep in step with its PyArg_ParseTuple format and constants.
import numpy as np

COMBINATION: int
BYTE: int
PACKET: int

def hhh(
    keys: np.ndarray,
    vol: np.ndarray,
    words: int,
    bits: int,
    tb: int,
    tp: int,
    criterion: int,
    minsize: int,
    cutoff: int,
    cutoffres: int,
    passes: np.ndarray,
    owner: np.ndarray,
    /,
) -> tuple[bytes, bytes]: ...
