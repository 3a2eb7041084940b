"""Lines an hour in the gateway's log while its look at a full spool's room fails (a disk I/O error),
under ``stop_polling``, with 3 Modbus TCP meters polled every 5 s.

Time is scaled: the meters are polled every ``5 s / SCALE`` (a real gateway and the Modbus TCP
simulator), the spool is full (its reserve beyond any disk), and the look at the filesystem's free
space fails with EIO for ``2 h / SCALE``, the reminder interval scaled alike; the gateway's lines
about the look are counted. One scaled hour stands for the first hour of the failure, the second for
any hour after it (the reminders' hour).

    .venv/bin/python -m benchmarks.room_look_log_lines
"""

from __future__ import annotations

import asyncio
import errno
import logging
import tempfile
from pathlib import Path

from aquami.ports import free_port
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import config_text, meters

SCALE = 100.0  # the shortest poll interval a gateway takes: 0.05 s
POLL_S, HOUR_S, METERS = 5.0, 3600.0, 3


class _Counting(logging.Handler):
    """The gateway's lines about its look at the spool's room."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += "its room" in record.getMessage()


def _failing_disk() -> int:
    raise OSError(errno.EIO, "Input/output error")


async def _hours(hours: int, spool: Path) -> list[int]:
    """The lines about the look in each of ``hours`` scaled hours of a failing look."""
    simulator = ModbusTcpSimulator(meters(METERS))
    await simulator.start()
    text = config_text(
        f"mqtt://127.0.0.1:{free_port()}",  # no broker: nothing delivered, no room given back
        {"b": simulator.port},
        {"b": range(1, METERS + 1)},
        str(spool),
        gateway_id="gw-room-bench",
        poll_interval_s=POLL_S / SCALE,
        retries=0,
        extra_spool='policy = "stop_polling"\n',
    )
    gateway = Gateway(parse_config_text(text))
    looks = getattr(gateway, "_room_looks", None)
    if looks is not None:  # (absent before the looks were said once an episode)
        looks._episodes.remind_every_s = HOUR_S / SCALE
    gateway.spool.reserve_bytes = 2**62
    counting = _Counting()
    logger = logging.getLogger("gateway.service")
    logger.addHandler(counting)
    logger.setLevel(logging.INFO)
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop, drain_timeout=0.1))
    per_hour = []
    try:
        while not gateway.spool_full:  # the first refusal: the looks begin
            await asyncio.sleep(POLL_S / SCALE)
        gateway.spool._disk_free = _failing_disk  # type: ignore[method-assign]
        for _ in range(hours):
            before = counting.lines
            await asyncio.sleep(HOUR_S / SCALE)
            per_hour.append(counting.lines - before)
    finally:
        stop.set()
        await running
        await simulator.stop()
        logger.removeHandler(counting)
    return per_hour


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        first, second = asyncio.run(_hours(2, Path(directory) / "s.sqlite"))
    print(f"full spool, its room's look failing, {METERS} meters polled every {POLL_S:g} s (time scaled 1:{SCALE:g})")
    print(f"  log lines in the failure's first hour   {first:8,}")
    print(f"  log lines in each hour after            {second:8,}")


if __name__ == "__main__":
    main()
