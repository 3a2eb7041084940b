"""Requests for units the Modbus TCP simulator has no meter at are one summary line per sweep.

Before, pymodbus 3.16 logged an ERROR for each (``requested device id does not exist: 7``, with the
frames received and sent: three lines), so ``aquami gateway scan`` of units 1..247 on the rig's
Modbus TCP transport (two meters) wrote 245 such records over the rig's table, and a gateway polling
a unit that is not there wrote one at each poll (and, asked again with nothing logged between,
pymodbus's ``Repeating....`` with the frames). Errors that are not an absent unit still show.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from firmware_protocols.modbus import load_profile
from simulators.absent_units import unit_ranges
from simulators.meter_model import MeterModel
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.modelled_meter import ModelledMeter

INSTALLED = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)


def _household(unit_id: int = 1) -> ModelledMeter:
    return ModelledMeter(unit_id, load_profile("smart_water_meter"), MeterModel("H1", installed=INSTALLED, seed=1))


def _records(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    """pymodbus's records and the simulator's summary lines."""
    pymodbus = [r.getMessage() for r in caplog.records if r.name.startswith("pymodbus")]
    summaries = [r.getMessage() for r in caplog.records if r.name == "simulators.absent_units"]
    return pymodbus, summaries


def test_a_sweep_over_empty_units_is_one_line_and_no_pymodbus_error(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[bool]:
        simulator = ModbusTcpSimulator([_household()], clock=lambda: NOW, name="plant-tcp", absent_quiet_s=0.3)
        await simulator.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=2, retries=0)
        await client.connect()
        try:
            errors = []
            for unit in [2, 3, 4, 5, 6, 9, 9, 9, 1]:  # unit 9 three times: pymodbus's "Repeating...."
                response = await client.read_input_registers(0, count=8, device_id=unit)
                errors.append(response.isError() and response.exception_code == 0x0B)
            await asyncio.sleep(1.0)  # the sweep is over: said once, before the simulator stops
            return errors
        finally:
            client.close()
            await simulator.stop()

    with caplog.at_level(logging.DEBUG, logger="simulators"):
        answered_0b = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert answered_0b == [True] * 8 + [False]  # as before: 0Bh for each empty unit, unit 1 reads
    pymodbus, summaries = _records(caplog)
    assert not [m for m in pymodbus if "device id does not exist" in m or "Repeating" in m], pymodbus
    assert summaries == [
        "plant-tcp: no meter at units 2..6, 9: 8 requests answered with exception 0Bh "
        "(gateway target device failed to respond)"
    ]


def test_a_unit_asked_again_and_again_is_said_at_most_once_a_period(caplog: pytest.LogCaptureFixture) -> None:
    """A gateway polling a unit that is not there, more often than the quiet time: still said."""

    async def scenario() -> None:
        simulator = ModbusTcpSimulator([_household()], clock=lambda: NOW, name="t", absent_quiet_s=0.5)
        simulator.absent.at_most_s = 1.0
        await simulator.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=2, retries=0)
        await client.connect()
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 2.6
            while loop.time() < end:
                await client.read_input_registers(0, count=8, device_id=7)
                await asyncio.sleep(0.1)
        finally:
            client.close()
            await simulator.stop()

    with caplog.at_level(logging.DEBUG, logger="simulators"):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    _, summaries = _records(caplog)
    assert 2 <= len(summaries) <= 4, summaries  # about once a second, and once at stop
    assert all(s.startswith("t: no meter at unit 7: ") for s in summaries), summaries


class _Broken(ModelledMeter):
    def registers_at(self, at: datetime) -> list[int]:
        raise RuntimeError("register store unreadable")


def test_an_error_that_is_no_absent_unit_still_shows(caplog: pytest.LogCaptureFixture) -> None:
    broken = _Broken(1, load_profile("smart_water_meter"), MeterModel("B1", installed=INSTALLED, seed=1))

    async def scenario() -> None:
        simulator = ModbusTcpSimulator([broken], clock=lambda: NOW)
        await simulator.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=2, retries=0)
        await client.connect()
        try:
            await client.read_input_registers(0, count=8, device_id=1)
        finally:
            client.close()
            await simulator.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    pymodbus, summaries = _records(caplog)
    assert any("register store unreadable" in m for m in pymodbus), pymodbus
    assert summaries == []


@given(st.sets(st.integers(1, 247), min_size=1))
def test_unit_ranges_name_every_unit_asked_and_no_other(units: set[int]) -> None:
    said: set[int] = set()
    for part in unit_ranges(list(units)).split(", "):
        first, _, last = part.partition("..")
        run = range(int(first), int(last or first) + 1)
        assert len(run) >= 1 and not said & set(run)
        said |= set(run)
    assert said == units
