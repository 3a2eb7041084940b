"""A loopback TCP proxy whose link can be cut, on cue, the ways a field network fails.

Put between a client and its server (gateway → broker, collector → broker, collector → PostgreSQL),
it forwards bytes both ways until told otherwise:

* :meth:`CutProxy.drop` closes every open connection, with a RST (``SO_LINGER`` 0) or a plain
  FIN: a router or a firewall that forgot the connection and says so. New connections work.
* :meth:`CutProxy.black_hole` holds every open connection and every new one (accepted, nothing
  forwarded, no close seen by either end): a dead link, which only a keepalive can detect.
  :meth:`CutProxy.restore` brings the link back. ``stale=False``: the held connections go on where
  they stopped (nothing lost: what TCP's retransmissions do for a link back before either end gave
  up); ``stale=True``: they stay dead for good, half-open on both sides (a NAT or a modem that came
  back with its connection table empty): each end must find out by itself. New connections work
  either way.

* :meth:`CutProxy.go_dead_at` makes a connection, open or new, half-open for good at the first
  chunk its client sends that holds a marker, which is not forwarded: a peer gone silent at an
  exact point of a protocol (a database connection dead before its first statement's answer, or
  before its transaction's COMMIT).
* :meth:`CutProxy.black_hole_at` makes the whole link a black hole (:meth:`black_hole`) as a client
  sends a marker, which is not forwarded (its connection stays half-open for good): a link that
  goes silent at an exact point of a protocol, for every connection at once (the gateway's MQTT 5
  CONNECT asked beside a held 3.1.1 session).

The proxy runs its own event loop on a thread, so a test calls it from plain synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from tests.services import LOOPBACK

_CHUNK = 65536
T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's side, the server's side, and whether it may forward."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    stale: bool = False  # left in a black hole: never forwards again, never closes
    ended: bool = False  # closed by the proxy

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.server) if w is not None]


class CutProxy:
    """Forwards ``LOOPBACK:port`` to ``target_host:target_port``; see the module docstring. ``port`` 0:
    any free one; a given one: a server that comes up where a client was already told to look."""

    def __init__(self, target_port: int, target_host: str = LOOPBACK, name: str = "proxy", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.name = name
        self.port = port
        self.connections = 0  # accepted since the start
        self._links: set[_Link] = set()
        self._holding = False  # a black hole: new connections are held too
        self._dead_at: bytes | None = None  # go_dead_at's marker
        self._hole_at: bytes | None = None  # black_hole_at's marker
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"cut-proxy-{name}", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one a connection, ended at close()

    # the test's thread --------------------------------------------------------------------------
    def start(self) -> CutProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def drop(self, *, reset: bool = True) -> int:
        """Close every open connection now (RST with ``reset``, else FIN); how many there were."""
        return self._call(self._drop(reset))

    def black_hole(self) -> None:
        """Forward nothing, on open connections and new ones alike, until :meth:`restore`."""
        self._call(self._black_hole())

    def restore(self, *, stale: bool) -> None:
        """The link is back: new connections work; held ones resume, or with ``stale`` stay dead."""
        self._call(self._restore(stale))

    def go_dead_at(self, marker: bytes | None) -> None:
        """From now, a connection (open or new) goes half-open (:meth:`restore` with ``stale``) as
        its client sends ``marker``, which is not forwarded; ``None``: no more."""
        self._dead_at = marker

    def black_hole_at(self, marker: bytes) -> None:
        """Once: as a client sends ``marker``, :meth:`black_hole`, all connections at once; the
        marker's own connection is half-open for good (as :meth:`go_dead_at`'s), so the marker is not
        forwarded even once the others are restored."""
        self._hole_at = marker

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._thread.is_alive() and not self._loop.is_closed():
            # a loop stopped but not closed keeps its self-pipe sockets: the garbage collector then
            # warned "unclosed event loop" in whichever later test it ran (a failure there)
            self._loop.close()

    def __enter__(self) -> CutProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # the proxy's loop -----------------------------------------------------------------------------
    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _drop(self, reset: bool) -> int:
        links = [link for link in self._links if not link.stale]  # (stale ones: nothing gets through)
        for link in links:
            self._end(link, reset=reset)
        return len(links)

    async def _black_hole(self) -> None:
        self._holding = True
        for link in self._links:
            link.flowing.clear()

    async def _restore(self, stale: bool) -> None:
        self._holding = False
        for link in list(self._links):
            if link.flowing.is_set() or link.stale:
                continue
            if stale:
                link.stale = True  # its pumps wait until close()
            else:
                link.flowing.set()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._end(link, reset=True)
        if self._tasks:  # ended links wake their tasks, which return; (cancelled, asyncio logs them)
            await asyncio.wait(list(self._tasks), timeout=5)

    def _end(self, link: _Link, *, reset: bool) -> None:
        self._links.discard(link)
        link.ended = True
        link.flowing.set()  # its pumps wake, see it ended, and stop
        for writer in link.writers():
            transport = writer.transport
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(_Link(client_writer), client_reader)
        finally:
            self._tasks.discard(task)

    async def _forward(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        client_writer = link.client
        if not self._holding:
            link.flowing.set()
        self._links.add(link)
        await link.flowing.wait()  # accepted; the server not even asked while the link is dead
        if link.ended:
            return
        try:
            server_reader, link.server = await asyncio.open_connection(*self.target)
        except OSError:  # the server is down: the client sees its connection closed, as it would
            self._end(link, reset=True)
            return
        await asyncio.gather(
            self._pump(link, client_reader, link.server, from_client=True),
            self._pump(link, server_reader, client_writer, from_client=False),
            return_exceptions=True,
        )

    async def _pump(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        while True:
            try:
                data = await source.read(_CHUNK)
            except OSError:
                data = b""
            if from_client and self._hole_at is not None and self._hole_at in data:
                self._hole_at = None
                link.stale = True  # the marker never goes through, the link restored or not
                await self._black_hole()
            if from_client and self._dead_at is not None and self._dead_at in data:
                link.stale = True
                link.flowing.clear()
            await link.flowing.wait()  # a black hole: hold it, and say nothing of an end either
            if link.ended:
                return
            if not data:  # one end closed: the other hears it (all of it, as the peer sent it)
                self._end(link, reset=False)
                return
            try:
                sink.write(data)
                await sink.drain()
            except OSError:
                self._end(link, reset=True)
                return
