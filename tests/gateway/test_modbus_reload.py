"""cmd/reload reads Modbus profiles afresh: a profile file fixed, then reloaded, decodes the fixed way."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from aquami.contracts.reads import Reading
from firmware_protocols.modbus import load_profile
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.smart_meter import SmartMeter, SteadyFlow
from tests.gateway.helpers import bus_config_text, record_readings, running, until
from tests.services import free_port

PROFILE = """name = "utility_meter"
word_order = "{order}"
[[blocks]]
start = 0
count = 2
[[fields]]
name = "volume_m3"
register = 0
type = "u32"
scale = "0.001"
"""


def test_a_profile_fixed_before_a_reload_is_the_one_read_after_it(tmp_path: Path) -> None:
    """The gateway kept the profile it had cached under the same path: after the fix and cmd/reload,
    123.456 m3 sent low word first was still read high word first (3,795,845.121 m3) until a restart."""
    profile_path = tmp_path / "meter.toml"
    profile_path.write_text(PROFILE.format(order="little"))  # as the meter sends it
    meter = SmartMeter("WM-R1", 1, load_profile(profile_path), SteadyFlow(datetime(2026, 1, 1, tzinfo=UTC), 123.456, 0))
    profile_path.write_text(PROFILE.format(order="big"))  # the engineer's mistake

    async def scenario() -> tuple[list[Reading], list[Reading]]:
        simulator = ModbusTcpSimulator([meter])
        await simulator.start()
        text = bus_config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            tmp_path / "s.sqlite",
            {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": simulator.port,
             "poll_interval_s": 0.2},
            [{"meter_id": "WM-R1", "unit_id": 1, "profile": str(profile_path)}],
            gateway_id="gw-reload",
        )  # fmt: skip
        gateway = Gateway(parse_config_text(text))
        taken: list[Reading] = []
        record_readings(gateway, taken)
        try:
            async with running(gateway):
                await until(lambda: len(taken) >= 1, 20)
                before = list(taken)
                profile_path.write_text(PROFILE.format(order="little"))  # fixed
                await gateway.apply_config(parse_config_text(text))
                taken.clear()
                await until(lambda: len(taken) >= 1, 20)
                return before, list(taken)
        finally:
            await simulator.stop()

    before, after = asyncio.run(scenario())
    assert before and before[0].volume_m3 != 123.456  # the mistake, read as configured
    assert after and all(r.volume_m3 == 123.456 for r in after)
