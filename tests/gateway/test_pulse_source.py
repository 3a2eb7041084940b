"""A pulse-counter module's readings say ``source.protocol`` "pulse" (the MQTT contract), with the bus
name and the module's address kept; a meter's own register on the same bus keeps the bus's protocol."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from aquami.contracts.reads import Reading, schema_errors
from firmware_protocols.modbus import load_profile
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.modbus_read import to_reading
from gateway.modbus_transport import ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.pulse import is_pulse_counter, source_protocol
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import PulseModule, meters

PULSE_UNIT = 10
PULSE = MeterConfig("PULSE-1", PULSE_UNIT, "pulse_counter", {"litres_per_pulse": 10})


def test_pulse_counters_are_told_by_their_profile() -> None:
    pulse = load_profile("pulse_counter", {"litres_per_pulse": 10})
    meter = load_profile("smart_water_meter")
    assert is_pulse_counter(pulse) and not is_pulse_counter(meter)
    assert source_protocol(pulse, "modbus-rtu") == "pulse"
    assert source_protocol(meter, "modbus-rtu") == "modbus-rtu"


@pytest.mark.parametrize("bus_protocol", ["modbus-tcp", "modbus-rtu"])
def test_a_decoded_pulse_count_is_a_pulse_reading(bus_protocol: str) -> None:
    profile = load_profile("pulse_counter", {"litres_per_pulse": 10})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    reading = to_reading(PULSE, profile, [0, 1234], at, bus_protocol, "bus-1")  # type: ignore[arg-type]
    assert reading.to_json()["source"] == {"protocol": "pulse", "bus": "bus-1", "address": PULSE_UNIT}
    assert reading.volume_m3 == pytest.approx(12.34)


def test_pulse_module_beside_a_meter_on_a_modbus_tcp_bus() -> None:
    profile = load_profile("pulse_counter", {"litres_per_pulse": 10})
    module = PulseModule(PULSE_UNIT, profile, 1234)
    meter = meters(1)[0]

    async def read_both() -> list[Reading]:
        simulator = ModbusTcpSimulator([meter, module])
        await simulator.start()
        bus = ModbusTcpBusConfig(
            "tcp-1", "127.0.0.1", simulator.port, (MeterConfig(meter.meter_id, meter.unit_id), PULSE)
        )
        transport = ModbusTcpTransport(bus, ProfileBook())
        try:
            return [await transport.read(m) for m in bus.meters]
        finally:
            await transport.close()
            await simulator.stop()

    plain, pulse = asyncio.run(read_both())
    assert plain.to_json()["source"] == {"protocol": "modbus-tcp", "bus": "tcp-1", "address": 1}
    assert pulse.to_json()["source"] == {"protocol": "pulse", "bus": "tcp-1", "address": PULSE_UNIT}
    assert pulse.volume_m3 == pytest.approx(12.34)
    message = {
        "gateway_id": "gw-1",
        "batch_seq": 1,
        "sent_at": "2026-01-01T00:00:00Z",
        "readings": [plain.to_json(), pulse.to_json()],
    }
    assert schema_errors(message) == []
