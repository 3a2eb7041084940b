"""The chaos tests' link cutter (tests/tcp_cut_proxy.py) does what each fault says, against an echo server."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.services import LOOPBACK
from tests.tcp_cut_proxy import CutProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(4096):
                if data == b"bye":
                    return  # the server closes its side
                self.request.sendall(data)
        except ConnectionResetError:  # the proxy reset its side
            pass


@pytest.fixture
def proxy() -> Iterator[CutProxy]:
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with CutProxy(server.server_address[1]) as cut:
            yield cut
    finally:
        server.shutdown()
        server.server_close()


def _client(proxy: CutProxy) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, proxy.port), timeout=5)
    sock.sendall(b"hello")
    assert sock.recv(100) == b"hello"
    return sock


def _silent(sock: socket.socket, wait_s: float = 0.5) -> bool:
    """Nothing arrives (no data, no close) for ``wait_s``."""
    sock.settimeout(wait_s)
    try:
        sock.recv(100)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(5)
    return False


def test_drop_resets_or_closes_every_open_connection_and_new_ones_work(proxy: CutProxy) -> None:
    reset = [_client(proxy), _client(proxy)]
    assert proxy.drop(reset=True) == 2
    for sock in reset:
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    fin = _client(proxy)
    assert proxy.drop(reset=False) == 1
    assert fin.recv(100) == b""
    _client(proxy).close()
    assert proxy.connections == 3 + 1


def test_a_black_hole_holds_everything_then_lets_it_through(proxy: CutProxy) -> None:
    sock = _client(proxy)
    proxy.black_hole()
    sock.sendall(b"held")
    assert _silent(sock)
    late = socket.create_connection((LOOPBACK, proxy.port), timeout=5)  # accepted, answered by nothing
    late.sendall(b"late")
    assert _silent(late, 0.2)
    proxy.restore(stale=False)
    assert sock.recv(100) == b"held"
    assert late.recv(100) == b"late"


def test_a_half_open_link_never_comes_back_nor_says_it_closed(proxy: CutProxy) -> None:
    sock = _client(proxy)
    proxy.black_hole()
    sock.sendall(b"bye")  # the server closes: in a dead link the client does not hear of it
    proxy.restore(stale=True)
    sock.sendall(b"more")
    assert _silent(sock, 1.0)
    assert proxy.drop(reset=True) == 0, "a half-open connection was told of its end"
    assert _silent(sock, 0.2)
    _client(proxy).close()  # new connections work


def test_a_black_hole_at_a_marker_holds_every_connection_from_that_chunk_on_once(proxy: CutProxy) -> None:
    proxy.black_hole_at(b"MARK")
    other = _client(proxy)  # the marker not sent yet: the link flows
    sock = _client(proxy)
    sock.sendall(b"xMARKx")
    assert _silent(sock), "the chunk with the marker went through"
    other.sendall(b"other")
    assert _silent(other, 0.2), "another open connection still flows"
    late = socket.create_connection((LOOPBACK, proxy.port), timeout=5)  # accepted, answered by nothing
    late.sendall(b"late")
    assert _silent(late, 0.2)
    proxy.restore(stale=False)
    assert other.recv(100) == b"other"
    assert late.recv(100) == b"late"
    assert _silent(sock, 0.2), "the marker went through once the link was back"
    late.sendall(b"MARK again")  # once: the marker holds nothing any more
    assert late.recv(100) == b"MARK again"
