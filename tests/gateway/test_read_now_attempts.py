"""A read-now that gets no reading says how many attempts were made, not the bus's ``retries`` + 1.

Before, its reply said ``no reading after 3 attempts`` with ``retries = 2`` whatever was made: also
for a refused answer (a :class:`gateway.transport.PollRefused`: another meter's serial number at the
unit), which is asked once, as the same answer comes however often it is asked.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firmware_protocols.modbus import load_profile
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.smart_meter import SteadyFlow
from tests.gateway.helpers import CountingMeter, bus_config_text, running, until
from tests.services import free_port


def test_a_read_now_of_a_refused_meter_says_one_attempt_and_of_a_silent_one_every_attempt(tmp_path: Path) -> None:
    """FLAT-5 configured with serial number 40000005, another meter (40000066) at its unit: "after 1
    attempt" (before: "after 3 attempts"), the meter asked once; GONE-9, a unit no meter answers at,
    asked 3 times: "after 3 attempts"."""
    other = CountingMeter(
        "OTHER",
        5,
        load_profile("smart_water_meter"),
        SteadyFlow(datetime.now(UTC) - timedelta(days=1), initial_m3=300.0, rate_m3h=0.5),
        serial_number="40000066",
    )
    port = free_port()
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port, "poll_interval_s": 3600.0,
         "timeout_s": 0.5, "retries": 2, "retry_backoff_s": 0.01},
        [{"meter_id": "FLAT-5", "unit_id": 5, "serial_number": "40000005"}, {"meter_id": "GONE-9", "unit_id": 9}],
        gateway_id="gw-read-now",
    )  # fmt: skip

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], int]:
        simulator = ModbusTcpSimulator([other], port=port)
        await simulator.start()
        gateway = Gateway(parse_config_text(text))
        try:
            async with running(gateway):
                await until(lambda: gateway._commands is not None, 10)  # (made as the gateway starts)
                commands = gateway._commands
                assert commands is not None
                await until(lambda: other.served >= 1, 10)  # its scheduled first poll, done
                served = other.served
                refused = await commands.read_now({"meter_id": "FLAT-5"})
                asked = other.served - served
                silent = await commands.read_now({"meter_id": "GONE-9"})
                return refused, silent, asked
        finally:
            await simulator.stop()

    refused, silent, asked = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert asked == 1  # one request: a refused answer is not asked again
    assert refused["ok"] is False and refused["error"].startswith(
        "FLAT-5: no reading after 1 attempt: FLAT-5: at unit 5 of bus tcp-1"
    ), refused  # before: "after 3 attempts"
    assert "the meter with serial number 40000066 answered, not 40000005" in refused["error"], refused
    assert silent["ok"] is False and silent["error"].startswith(
        "GONE-9: no reading after 3 attempts: GONE-9: no answer from unit 9"
    ), silent
