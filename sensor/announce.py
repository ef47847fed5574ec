"""Zeroconf (mDNS/DNS-SD) announcement: ``_flowlstm._tcp.local.`` with TXT records.

Lets an operator or a collector find the sensors on a segment, which model each
runs and where its metrics are.  Turned off with ``--no-announce`` or
``announce: false``.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroconf import ServiceInfo

SERVICE = "_flowlstm._tcp.local."


class Announcer:
    def __init__(self, name: str, port: int, txt: dict[str, str]) -> None:
        from zeroconf import Zeroconf

        self._zc = Zeroconf()
        self._name, self._port, self._txt = name, port, dict(txt)
        self.info = self._info()
        self._zc.register_service(self.info)

    def _info(self) -> ServiceInfo:
        from zeroconf import ServiceInfo

        return ServiceInfo(
            SERVICE,
            f"{self._name}.{SERVICE}",
            port=self._port,
            properties=self._txt,
            server=f"{socket.gethostname()}.local.",
            addresses=[socket.inet_aton("127.0.0.1")] if self._port else [],
        )

    def update(self, txt: dict[str, str]) -> None:
        """Change TXT records (e.g. the model's sha256 after a reload) and re-announce."""
        if {**self._txt, **txt} != self._txt:
            self._txt.update(txt)
            self.info = self._info()
            self._zc.update_service(self.info)

    def close(self) -> None:
        self._zc.unregister_service(self.info)
        self._zc.close()
