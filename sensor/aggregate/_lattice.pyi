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
def odflows(
    records: np.ndarray,
    itemsize: int,
    off_l3: int,
    off_src: int,
    off_dst: int,
    off_wire: int,
    family: int,
    keys_out: np.ndarray,
    vol_out: np.ndarray,
    first_out: np.ndarray,
    flow_out: np.ndarray,
    /,
) -> int: ...
