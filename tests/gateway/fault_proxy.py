"""A Modbus TCP proxy that puts wire faults between a gateway and a simulator.

Each request goes to the simulator unchanged; each reply passes through a
:class:`simulators.wire_faults.WireFaultPlan`, chosen by the request's unit id, so a meter can be
slow, silent or garbled while its neighbours on the same bus are not. The plan's log is the ground
truth of what happened on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from simulators.wire_faults import WireFaultPlan


def break_byte_count(reply: bytes) -> bytes:
    """Modbus TCP has no checksum; a corrupted reply shows as a byte count that does not add up."""
    if len(reply) > 8:
        return reply[:8] + bytes([reply[8] ^ 0x55]) + reply[9:]
    return reply


async def _frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(7)  # MBAP: transaction, protocol, length, unit id
    length = int.from_bytes(header[4:6], "big")
    return header + await reader.readexactly(length - 1)


class FaultProxy:
    def __init__(self, upstream_port: int, plan: WireFaultPlan):
        self.upstream_port = upstream_port
        self.plan = plan
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            while True:
                request = await _frame(client_reader)
                up_writer.write(request)
                await up_writer.drain()
                reply = await _frame(up_reader)
                outcome = self.plan.apply(reply, request[6], datetime.now(UTC), corrupt_checksum=break_byte_count)
                if outcome.delay_s:
                    await asyncio.sleep(outcome.delay_s)
                if outcome.reply is not None:
                    client_writer.write(outcome.reply)
                    await client_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            for writer in (client_writer, up_writer):
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
