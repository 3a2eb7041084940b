"""A serial bus's failed poll is warned in one form, whichever protocol it carries. A bus that will
not open: the bus's name, then what is wrong with its port (``mbus-1: cannot open /dev/ttyUSB1: No
such file or directory``), after the scheduler's ``METER on BUS: failed after N attempts, the
last:``; a meter that does not answer: ``METER: no answer from`` its address on the bus (``unit 9``,
``primary address 9``, ``secondary address 26000009``).

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
from gateway.transport import LineUnusable, NoAnswer
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.helpers import meters
from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves

#: how the first failed poll of an episode ends (gateway.episodes: the next are said hourly)
SAID_ONCE = " (said again every 1 h while it fails, and once it answers for 90 s)"
PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"  # a pty here may take no parity


def _warning(bus: BusConfig, caplog: pytest.LogCaptureFixture) -> tuple[str, BaseException | None]:
    """The scheduler's warning for one failed poll of the bus's meter, and the attempt's error."""
    warning, error, _ = _failed_poll(bus, caplog)
    return warning, error


def _failed_poll(bus: BusConfig, caplog: pytest.LogCaptureFixture) -> tuple[str, BaseException | None, str | None]:
    """The scheduler's warning for one failed poll of the bus's meter, the attempt's error, and the
    poll's reason as the meter's health takes it (its ``last_error``)."""
    transport = make_transport(bus, ProfileBook())

    async def taken(reading: Reading) -> None:
        raise AssertionError(f"{reading.meter_id} read on a port that is not there")

    scheduler = BusScheduler(bus, transport, on_reading=taken)
    failures: list[BaseException] = []
    reasons: list[str | None] = []

    async def poll() -> None:
        meter = bus.meters[0]
        try:
            await scheduler.attempt(meter)
        except Exception as error:
            failures.append(error)
        reading, reason, _ = await scheduler._poll(meter)
        assert reading is None
        reasons.append(reason)
        await transport.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.scheduler"):
        asyncio.run(asyncio.wait_for(poll(), 30))
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.scheduler"]
    assert len(warnings) == 1, warnings
    return warnings[0], failures[0] if failures else None, reasons[0]


def test_a_bus_that_will_not_open_is_warned_alike_on_m_bus_and_modbus_rtu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rtu_device, mbus_device = str(tmp_path / "ttyUSB0"), str(tmp_path / "ttyUSB1")  # never there
    rtu = ModbusRtuBusConfig("rs485-1", rtu_device, (MeterConfig("M000002", 2),), retries=0)
    mbus = MBusBusConfig("mbus-1", mbus_device, (MeterConfig("MB000001", 1, "mbus"),), retries=0)

    rtu_warning, rtu_error = _warning(rtu, caplog)
    mbus_warning, mbus_error = _warning(mbus, caplog)

    missing = "No such file or directory (unplugged, or another device name? ls /dev/serial/by-id/)"
    assert rtu_warning == (
        f"M000002 on rs485-1: failed after 1 attempt, the last: rs485-1: cannot open {rtu_device}: {missing}{SAID_ONCE}"
    )
    assert mbus_warning == (
        f"MB000001 on mbus-1: failed after 1 attempt, the last: mbus-1: cannot open {mbus_device}: {missing}{SAID_ONCE}"
    )  # before: "… the last: MB000001: mbus-1: cannot open …"
    assert isinstance(rtu_error, LineUnusable) and isinstance(mbus_error, LineUnusable), (rtu_error, mbus_error)


def test_a_meter_that_does_not_answer_is_warned_alike_on_m_bus_and_modbus_rtu(caplog: pytest.LogCaptureFixture) -> None:
    """Each names the address it was asked at, the Modbus meter its unit, the M-Bus meter its primary
    or secondary address, in the warning and in the reason its health keeps (``last_error``). Before,
    an M-Bus meter's was ``GHOST-MB: no answer`` alone (its address looked up by the technician);
    before that, a Modbus meter's silence was in pymodbus's words, ``GHOST-RTU: ModbusIOException:
    Modbus Error: [Input/Output] No response received after 0 retries, continue with next request``."""
    rtu_simulator = ModbusRtuSimulator(meters(1), LineSettings(baudrate=9600, parity="E")).start()
    mbus_line = SerialLine(MBusSlaves([MBusSlave(1, "26000001", 12.5)]), LineSettings(baudrate=2400, parity="E"))
    mbus_line.start()
    try:
        rtu = ModbusRtuBusConfig(
            "rs485-1", rtu_simulator.port, (MeterConfig("GHOST-RTU", 9),), parity=PARITY, timeout_s=0.3, retries=0
        )
        mbus = MBusBusConfig("mbus-1", mbus_line.port, (MeterConfig("GHOST-MB", 9, "mbus"),), parity=PARITY, retries=0)
        by_secondary = MeterConfig("GHOST-SEC", 0xFD, "mbus", secondary_address="26000009")
        mbus_secondary = MBusBusConfig("mbus-1", mbus_line.port, (by_secondary,), parity=PARITY, retries=0)
        rtu_warning, rtu_error, rtu_reason = _failed_poll(rtu, caplog)
        mbus_warning, mbus_error, mbus_reason = _failed_poll(mbus, caplog)
        secondary_warning, secondary_error, secondary_reason = _failed_poll(mbus_secondary, caplog)
    finally:
        rtu_simulator.stop()
        mbus_line.stop()
    assert rtu_warning == (
        f"GHOST-RTU on rs485-1: failed after 1 attempt, the last: GHOST-RTU: no answer from unit 9{SAID_ONCE}"
    )
    assert mbus_warning == (
        f"GHOST-MB on mbus-1: failed after 1 attempt, the last: GHOST-MB: no answer from primary address 9{SAID_ONCE}"
    )
    assert secondary_warning == (
        f"GHOST-SEC on mbus-1: failed after 1 attempt, the last: GHOST-SEC: no answer from secondary address 26000009"
        f"{SAID_ONCE}"
    )
    assert rtu_reason == "GHOST-RTU: no answer from unit 9"
    assert mbus_reason == "GHOST-MB: no answer from primary address 9"
    assert secondary_reason == "GHOST-SEC: no answer from secondary address 26000009"
    for error in (rtu_error, mbus_error, secondary_error):  # silence, not an answer refused: a scan passes over it
        assert isinstance(error, NoAnswer), error
