"""Wire faults for Modbus TCP: a proxy in front of a TCP simulator that spoils replies as planned.

The gateway connects to the proxy; each request goes through unchanged, each response frame (MBAP
header, then the PDU) passes :meth:`WireFaultPlan.apply` with its unit id as the address. TCP has no
checksum, so ``bad_checksum`` spoils the transaction id instead (the client must reject a reply
that answers another request); the other faults act on the bytes as on a serial line.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aquami.clock import Clock, utc_now
from simulators.wire_faults import WireFaultPlan

MBAP_HEADER = 7


def spoil_transaction_id(frame: bytes) -> bytes:
    return bytes([frame[0] ^ 0xFF, frame[1] ^ 0xFF]) + frame[2:] if len(frame) >= 2 else frame


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


@dataclass
class ModbusTcpFaultProxy:
    upstream_host: str
    upstream_port: int
    faults: WireFaultPlan
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port; read it after start()
    clock: Clock = utc_now
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _clients: set[asyncio.StreamWriter] = field(default_factory=set, init=False, repr=False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection, each client's handler ending on its own.

        The clients' connections are closed first: their handlers then end normally (a cancelled
        handler is reported by asyncio as an error), and Python 3.12's ``Server.wait_closed`` waits
        for the connections to close.
        """
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._clients):
            writer.transport.abort()  # not close(): a client that reads nothing would keep it open
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=5.0)
            for task in stuck:
                task.cancel()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._clients.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            except OSError:
                return  # the server behind is gone: the client's connection is closed below
            try:
                await self._relay(reader, writer, up_reader, up_writer)
            finally:
                await _close(up_writer)
        finally:
            await _close(writer)
            self._clients.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Both directions until either ends: a client gone (or the server gone) ends the other too."""
        directions = {
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._responses(up_reader, writer)),
        }
        try:
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for direction in directions:
                direction.cancel()
            await asyncio.gather(*directions, return_exceptions=True)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()

    async def _responses(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(MBAP_HEADER)
                length = int.from_bytes(header[4:6], "big")
                frame = header + await reader.readexactly(max(length - 1, 0))
                outcome = self.faults.apply(frame, header[6], self.clock(), spoil_transaction_id)
                if outcome.delay_s:
                    await asyncio.sleep(outcome.delay_s)
                if outcome.reply:
                    writer.write(outcome.reply)
                    await writer.drain()
