"""Progress bars for long file jobs (stderr, only on a terminal)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from .capture import CaptureReader


class FileProgress:
    """Read capture files in order, showing bytes read against total file size.

    For compressed files the bar counts uncompressed bytes, whose total is unknown.
    """

    def __init__(self, paths: list[str], enabled: bool = True):
        self.paths = list(paths)
        self.enabled = enabled
        self._bar: tqdm | None = None

    def __enter__(self) -> FileProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def batches(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, path in enumerate(self.paths):
            reader = CaptureReader(path)
            size = os.path.getsize(path) if os.path.isfile(path) else None
            if self._bar is not None:
                self._bar.close()
            # disable=None: draw only when stderr is a terminal.
            self._bar = tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                dynamic_ncols=True,
                leave=False,
                desc=f"[{i + 1}/{len(self.paths)}] {os.path.basename(path)}",
                disable=None if self.enabled else True,
            )
            done = 0
            for batch in reader:
                yield path, batch
                pos = reader.info.bytes_read
                if reader.info.compression:
                    self._bar.total = None
                self._bar.update(pos - done)
                self._bar.set_postfix(pkts=reader.info.packets, refresh=False)
                done = pos
