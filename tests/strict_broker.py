"""A broker that holds client ids to what MQTT requires every broker to take (3.1.3.1: 1 to 23
letters and digits): a proxy in front of Mosquitto (which takes more) that answers a CONNECT with
any other client id "identifier rejected" (3.1.1's return code 2; 0x85 in MQTT 5), as a strict
broker does, and passes every other connection through."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from typing import Self

_COMPLIANT = re.compile(rb"[0-9A-Za-z]{1,23}")


def _varint(sock: socket.socket) -> tuple[int, bytes]:
    value, shift, raw = 0, 0, b""
    while True:
        byte = _exactly(sock, 1)
        raw += byte
        value |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            return value, raw


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _connect_client_id(body: bytes) -> tuple[int, bytes]:
    """(protocol level, client id) of a CONNECT packet's variable header and payload."""
    name_length = int.from_bytes(body[:2], "big")
    at = 2 + name_length
    level = body[at]
    at += 1 + 1 + 2  # level, flags, keepalive
    if level == 5:  # properties: a variable byte integer length, then that many bytes
        length, shift = 0, 0
        while True:
            byte = body[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        at += length
    id_length = int.from_bytes(body[at : at + 2], "big")
    return level, body[at + 2 : at + 2 + id_length]


class ConnectProxy:
    """A proxy in front of the Mosquitto on ``upstream_port`` that reads each client's CONNECT (its
    protocol level and client id) before anything else passes: what it then does with the
    connection is its subclass's :meth:`_connected`, which :meth:`_upstream` passes the CONNECT on
    for. A connection that fails before that is closed."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            head = _exactly(client, 1)
            length, raw_length = _varint(client)
            body = _exactly(client, length)
            level, client_id = _connect_client_id(body)
            self._connected(client, head + raw_length + body, level, client_id)
        except (OSError, ConnectionError, IndexError):
            client.close()

    def _connected(self, client: socket.socket, connect: bytes, level: int, client_id: bytes) -> None:
        raise NotImplementedError

    def _upstream(self, connect: bytes) -> socket.socket:
        """A connection to the broker, the client's CONNECT sent on it."""
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        upstream.sendall(connect)
        return upstream

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StrictBroker(ConnectProxy):
    def __init__(self, upstream_port: int):
        self.client_ids: list[tuple[bytes, bool]] = []  # every CONNECT's client id, and whether it was taken
        super().__init__(upstream_port)

    def taken(self) -> list[bytes]:
        with self._lock:
            return [client_id for client_id, ok in self.client_ids if ok]

    def refused(self) -> list[bytes]:
        with self._lock:
            return [client_id for client_id, ok in self.client_ids if not ok]

    def _connected(self, client: socket.socket, connect: bytes, level: int, client_id: bytes) -> None:
        ok = _COMPLIANT.fullmatch(client_id) is not None
        with self._lock:
            self.client_ids.append((client_id, ok))
        if not ok:
            client.sendall(b"\x20\x03\x00\x85\x00" if level == 5 else b"\x20\x02\x00\x02")
            client.close()
            return
        upstream = self._upstream(connect)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
