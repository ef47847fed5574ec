"""Zeroconf (mDNS/DNS-SD) announcement: ``_flowlstm._tcp.local.`` with TXT records.

Lets an operator or a collector find the sensors on a segment, which model each
runs and where its metrics are.  Turned off with ``--no-announce`` or
``announce: false``.
"""
from __future__ import annotations

import socket

SERVICE = "_flowlstm._tcp.local."


class Announcer:
    def __init__(self, name: str, port: int, txt: dict[str, str]):
        from zeroconf import ServiceInfo, Zeroconf

        self._zc = Zeroconf()
        host = socket.gethostname()
        self.info = ServiceInfo(
            SERVICE, f"{name}.{SERVICE}", port=port, properties=txt, server=f"{host}.local.",
            addresses=[socket.inet_aton("127.0.0.1")] if port else [],
        )
        self._zc.register_service(self.info)

    def close(self) -> None:
        self._zc.unregister_service(self.info)
        self._zc.close()
