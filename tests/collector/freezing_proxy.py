"""A TCP proxy whose connections can be frozen: kept open, nothing forwarded either way, no RST.

What a database host that froze or lost power looks like to its clients, as far as a process can
make it (the proxy's kernel still acknowledges what it is sent). Connections made after a freeze
are forwarded as usual.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from tests.services import LOOPBACK


class FreezingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._frozen: set[int] = set()  # connection numbers that forward nothing any more
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        """From now on every open connection forwards nothing; new ones work."""
        with self._lock:
            self._frozen.update(range(len(self._sockets) // 2))

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
            except OSError:
                return
            with self._lock:
                number = len(self._sockets) // 2
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(number, source, sink), daemon=True).start()

    def _pump(self, number: int, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if number in self._frozen:
                    self._closed.wait()  # hold it: neither forward nor close
                    return
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> FreezingProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
