"""A Modbus poll checks its meter's serial number off the gateway's event loop
(gateway.modbus_transport: the check runs in a thread, as an M-Bus meter's does in its reading thread).

Before, a Modbus meter's first answer in a run read its remembered serial number from the spool, and
a first answer taken (or an earlier version's row given its kind) wrote it there, on the event loop:
SQLite blocks it, and with it the gateway's MQTT keepalives and every bus's polls.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings
from tests.gateway.helpers import running, until
from tests.gateway.test_scan_off_loop import _ReadsOnThreads
from tests.gateway.test_scan_serial_numbers import _config, _meters


def test_modbus_polls_read_and_write_the_spool_off_the_event_loop(tmp_path: Path) -> None:
    """FLAT-5, unpinned and never heard: its first answer is read (none) and remembered. FLAT-6,
    remembered by an earlier version (a row without its kind): read, matched, given its kind. FLAT-7,
    remembered with another serial number: read, and its poll refused, the spool's row left as it
    was. Every read and write of the spool on another thread than the event loop's."""
    meters: list[dict[str, Any]] = [{"meter_id": f"FLAT-{unit}", "unit_id": unit} for unit in (5, 6, 7)]
    earlier = Spool(tmp_path / "s.sqlite")
    earlier.save_identity("FLAT-6", "40000006", "2026-12-06T00:00:00Z")
    earlier.save_identity("FLAT-7", "40000099", "2026-12-06T00:00:00Z", "serial number")
    earlier.close()
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, meters)

        async def scenario() -> tuple[list[dict[str, Any]], _ReadsOnThreads, threading.Thread]:
            gateway = Gateway(load_config(config), config_path=config)
            store = _ReadsOnThreads(gateway.spool)
            gateway.identities.store = store
            async with running(gateway):
                await until(lambda: gateway._commands is not None, 10)
                assert gateway._commands is not None
                replies = [await gateway._commands.read_now({"meter_id": f"FLAT-{unit}"}) for unit in (5, 6, 7)]
            return replies, store, threading.current_thread()

        replies, store, loop_thread = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [reply["ok"] for reply in replies] == [True, True, False]
    assert "the meter with serial number 1234567890 answered, not 40000099" in replies[2]["error"]
    assert sorted({meter_id for meter_id, _ in store.reads}) == ["FLAT-5", "FLAT-6", "FLAT-7"]
    assert sorted(meter_id for meter_id, _ in store.saves) == ["FLAT-5", "FLAT-6"]
    assert [meter_id for meter_id, thread in store.reads + store.saves if thread is loop_thread] == []
    after = Spool(tmp_path / "s.sqlite")
    try:
        kept = {unit: after.load_identity(f"FLAT-{unit}") for unit in (5, 6, 7)}
    finally:
        after.close()
    assert kept[5] is not None and kept[5][0] == "40000005" and kept[5][2] == "serial number"
    assert kept[6] == ("40000006", "2026-12-06T00:00:00Z", "serial number")
    assert kept[7] == ("40000099", "2026-12-06T00:00:00Z", "serial number")
