"""Mosquitto as it ends a session taken over from 2.0.15 on: a proxy in front of the Mosquitto here.

When a client connects with the client id of an MQTT 5 client already connected, MQTT 5 (3.1.4)
has the broker send the old client a DISCONNECT with reason 0x8E, "Session taken over", before
closing its connection. Mosquitto does so from 2.0.15 (its ChangeLog: "Fix incorrect return code
being sent in DISCONNECT when a client session is taken over", #2607), as do EMQX and HiveMQ; the
Debian Mosquitto these tests run, 2.0.11, closes the old connection without a word. This proxy adds
only that packet: it reads each CONNECT's client id and, when an open MQTT 5 connection has the same
one, writes ``DISCONNECT 0x8E`` to that connection's client and forwards nothing more to it; then
it passes the CONNECT on, and Mosquitto does the rest (it closes the old session's connection).
Packets from the broker are forwarded whole, so the DISCONNECT never lands inside another.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from tests.strict_broker import ConnectProxy, _exactly, _varint

SESSION_TAKEN_OVER = b"\xe0\x01\x8e"  # DISCONNECT, remaining length 1, reason 0x8E (no properties)


@dataclass(eq=False)
class _Link:
    client: socket.socket
    client_id: bytes
    mqtt5: bool
    lock: threading.Lock = field(default_factory=threading.Lock)  # one writer to the client at a time
    taken_over: bool = False


class TakeoverBroker(ConnectProxy):
    """``url`` reaches Mosquitto on ``upstream_port`` through the proxy; ``taken_over`` counts the
    DISCONNECT 0x8E it sent."""

    def __init__(self, upstream_port: int):
        self.taken_over = 0
        self._links: list[_Link] = []
        super().__init__(upstream_port)

    def _connected(self, client: socket.socket, connect: bytes, level: int, client_id: bytes) -> None:
        link = _Link(client, client_id, level == 5)
        with self._lock:
            for old in self._links:
                if old.client_id == client_id and old.mqtt5 and not old.taken_over:
                    with old.lock:
                        old.taken_over = True
                        self.taken_over += 1
                        with contextlib.suppress(OSError):
                            old.client.sendall(SESSION_TAKEN_OVER)
                            old.client.shutdown(socket.SHUT_WR)
            self._links.append(link)
        upstream = self._upstream(connect)
        threading.Thread(target=self._to_broker, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._to_client, args=(link, upstream), daemon=True).start()

    @staticmethod
    def _to_broker(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := client.recv(65536):
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

    def _to_client(self, link: _Link, upstream: socket.socket) -> None:
        try:
            while True:
                head = _exactly(upstream, 1)
                length, raw_length = _varint(upstream)
                packet = head + raw_length + _exactly(upstream, length)
                with link.lock:
                    if link.taken_over:
                        break
                    link.client.sendall(packet)
        except (OSError, ConnectionError):
            pass
        finally:
            with self._lock:
                if link in self._links:
                    self._links.remove(link)
            for sock in (link.client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
