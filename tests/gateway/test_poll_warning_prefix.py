"""A serial bus's failed poll is warned in one form, whichever protocol it carries. A bus that will
not open: the bus's name, then what is wrong with its port (``mbus-1: cannot open /dev/ttyUSB1: No
such file or directory``), after the scheduler's ``METER on BUS: failed after N attempts, the
last:``; a meter that does not answer: ``METER: no answer``.

Before, an M-Bus bus's warning put the meter's id in front of the bus's own failure (``MB000001:
mbus-1: cannot open …``), where a Modbus RTU bus's said ``rs485-1: cannot open …``, and the M-Bus
failure was no longer a :class:`LineUnusable` (the bus's, not the meter's).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Literal

import pytest

from aquami.contracts.reads import Reading
from gateway.buses import make_transport
from gateway.config import BusConfig, MBusBusConfig, MeterConfig, ModbusRtuBusConfig
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler
from gateway.transport import LineUnusable
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.helpers import meters
from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"  # a pty here may take no parity


def _warning(bus: BusConfig, caplog: pytest.LogCaptureFixture) -> tuple[str, BaseException | None]:
    """The scheduler's warning for one failed poll of the bus's meter, and the attempt's error."""
    transport = make_transport(bus, ProfileBook())

    async def taken(reading: Reading) -> None:
        raise AssertionError(f"{reading.meter_id} read on a port that is not there")

    scheduler = BusScheduler(bus, transport, on_reading=taken)
    failures: list[BaseException] = []

    async def poll() -> None:
        meter = bus.meters[0]
        try:
            await scheduler.attempt(meter)
        except Exception as error:
            failures.append(error)
        await scheduler.poll(meter)
        await transport.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.scheduler"):
        asyncio.run(asyncio.wait_for(poll(), 30))
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.scheduler"]
    assert len(warnings) == 1, warnings
    return warnings[0], failures[0] if failures else None


def test_a_bus_that_will_not_open_is_warned_alike_on_m_bus_and_modbus_rtu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rtu_device, mbus_device = str(tmp_path / "ttyUSB0"), str(tmp_path / "ttyUSB1")  # never there
    rtu = ModbusRtuBusConfig("rs485-1", rtu_device, (MeterConfig("M000002", 2),), retries=0)
    mbus = MBusBusConfig("mbus-1", mbus_device, (MeterConfig("MB000001", 1, "mbus"),), retries=0)

    rtu_warning, rtu_error = _warning(rtu, caplog)
    mbus_warning, mbus_error = _warning(mbus, caplog)

    missing = "No such file or directory"
    assert rtu_warning == (
        f"M000002 on rs485-1: failed after 1 attempts, the last: rs485-1: cannot open {rtu_device}: {missing}"
    )
    assert mbus_warning == (
        f"MB000001 on mbus-1: failed after 1 attempts, the last: mbus-1: cannot open {mbus_device}: {missing}"
    )  # before: "… the last: MB000001: mbus-1: cannot open …"
    assert isinstance(rtu_error, LineUnusable) and isinstance(mbus_error, LineUnusable), (rtu_error, mbus_error)


def test_a_meter_that_does_not_answer_is_warned_alike_on_m_bus_and_modbus_rtu(caplog: pytest.LogCaptureFixture) -> None:
    """Before, a Modbus meter's silence was in pymodbus's words, ``GHOST-RTU: ModbusIOException: Modbus
    Error: [Input/Output] No response received after 0 retries, continue with next request``, beside an
    M-Bus meter's ``GHOST-MB: no answer``."""
    rtu_simulator = ModbusRtuSimulator(meters(1), LineSettings(baudrate=9600, parity="E")).start()
    mbus_line = SerialLine(MBusSlaves([MBusSlave(1, "26000001", 12.5)]), LineSettings(baudrate=2400, parity="E"))
    mbus_line.start()
    try:
        rtu = ModbusRtuBusConfig(
            "rs485-1", rtu_simulator.port, (MeterConfig("GHOST-RTU", 9),), parity=PARITY, timeout_s=0.3, retries=0
        )
        mbus = MBusBusConfig("mbus-1", mbus_line.port, (MeterConfig("GHOST-MB", 9, "mbus"),), parity=PARITY, retries=0)
        rtu_warning, _ = _warning(rtu, caplog)
        mbus_warning, _ = _warning(mbus, caplog)
    finally:
        rtu_simulator.stop()
        mbus_line.stop()
    assert rtu_warning == "GHOST-RTU on rs485-1: failed after 1 attempts, the last: GHOST-RTU: no answer from unit 9"
    assert mbus_warning == "GHOST-MB on mbus-1: failed after 1 attempts, the last: GHOST-MB: no answer"
