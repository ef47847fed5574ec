# Stub for the C extension sensor/_flowstats.c; keep in step with its PyArg_ParseTuple format and constants.
import numpy as np

N_COLS: int

def group_stats(
    records: np.ndarray,
    itemsize: int,
    off_ts: int,
    off_wire: int,
    off_iplen: int,
    off_ttl: int,
    off_flags: int,
    off_win: int,
    order: np.ndarray,
    starts: np.ndarray,
    src_low: np.ndarray,
    init_low: np.ndarray,
    out: np.ndarray,
    ts_out: np.ndarray,
    /,
) -> None: ...
