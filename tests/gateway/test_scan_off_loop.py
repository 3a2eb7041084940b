"""The MQTT ``scan`` command reads the identities the spool remembers off the gateway's event loop
(gateway.meter_identity.MeterIdentities.read_ahead).

Before, it read each meter configured without its serial number and not polled yet in this run from
the spool on the event loop: SQLite's reads block it, and with it the gateway's MQTT keepalives and
every bus's polls.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from gateway.config import load_config
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings
from tests.gateway.helpers import running, until
from tests.gateway.test_scan_serial_numbers import _config, _meters


class _ReadsOnThreads:
    """The gateway's spool, as its identity store, each read and write recording the thread it ran on."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.reads: list[tuple[str, threading.Thread]] = []
        self.saves: list[tuple[str, threading.Thread]] = []

    def load_identity(self, meter_id: str) -> tuple[str, str, str | None] | None:
        self.reads.append((meter_id, threading.current_thread()))
        return self.spool.load_identity(meter_id)

    def save_identity(self, meter_id: str, identification: str, first_at: str, kind: str | None = None) -> None:
        self.saves.append((meter_id, threading.current_thread()))
        self.spool.save_identity(meter_id, identification, first_at, kind)


def test_the_scan_command_reads_the_spool_off_the_event_loop(tmp_path: Path) -> None:
    """FLAT-8 and FLAT-9, unpinned, remembered by an earlier run, silent now (never polled this run,
    so not known yet): the scan command reads them from the spool, not on the event loop's thread,
    and names them with the serial numbers remembered."""
    meters = [{"meter_id": "FLAT-8", "unit_id": 8}, {"meter_id": "FLAT-9", "unit_id": 9}]
    earlier = Spool(tmp_path / "s.sqlite")
    for unit in (8, 9):
        earlier.save_identity(f"FLAT-{unit}", f"4000000{unit}", "2026-12-06T00:00:00Z")
    earlier.close()
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, meters)

        async def scenario() -> tuple[dict[str, object], list[tuple[str, threading.Thread]], threading.Thread]:
            gateway = Gateway(load_config(config), config_path=config)
            store = _ReadsOnThreads(gateway.spool)
            gateway.identities.store = store
            async with running(gateway):
                await until(lambda: gateway._commands is not None, 10)
                assert gateway._commands is not None
                reply = await gateway._commands.scan({"bus": "rtu-1", "first": 4, "last": 9})
            return reply, store.reads, threading.current_thread()

        reply, reads, loop_thread = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert sorted(meter_id for meter_id, _ in reads) == ["FLAT-8", "FLAT-9"]
    assert [meter_id for meter_id, thread in reads if thread is loop_thread] == []
    assert reply["configured_meters"] == [
        {"meter_id": f"FLAT-{unit}", "address": unit, "answer": "silent", "known_by": f"4000000{unit}", "pinned": False}
        for unit in (8, 9)
    ]
