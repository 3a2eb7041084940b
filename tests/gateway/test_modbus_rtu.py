"""Modbus RTU over a simulated serial line (a pty at 9600 8E1 timing), and a pulse counter that wraps."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import serial

from aquami.contracts.reads import Reading
from firmware_protocols.modbus import MeterProfile, load_profile
from gateway.config import parse_config_text
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import bus_config_text, meters, run_config_until

pytestmark = pytest.mark.services
PARITY = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE
PULSE_UNIT = 10
LITRES_PER_PULSE = 10


@dataclass
class PulseModule:
    """A pulse-counter I/O module: a 32-bit count that advances ``step`` pulses between reads."""

    unit_id: int
    profile: MeterProfile
    count: int
    step: int = 1000

    def registers_at(self, at: datetime) -> list[int]:
        registers = [self.count >> 16, self.count & 0xFFFF]
        self.count = (self.count + self.step) % 2**32
        return registers


def test_rtu_bus_with_retries_and_a_wrapping_pulse_counter(tmp_path: Path, mosquitto) -> None:
    pulse = PulseModule(PULSE_UNIT, load_profile("pulse_counter", {"litres_per_pulse": LITRES_PER_PULSE}), 2**32 - 2500)
    plan = WireFaultPlan([WireFault(WireFaultKind.BAD_CHECKSUM, address=2, limit=2)])  # unit 2: two bad CRCs
    simulator = ModbusRtuSimulator([*meters(2), pulse], LineSettings(baudrate=9600, parity="E"), plan).start()
    text = bus_config_text(
        mosquitto.url,
        tmp_path / "s.sqlite",
        {
            "name": "rtu-1",
            "protocol": "modbus-rtu",
            "device": simulator.port,
            "baudrate": 9600,
            "parity": PARITY,
            # not the 9600-baud exchange's ~30 ms nor a tight 0.3 s: a late answer is a failed attempt, which
            # the exact counts below (two, the bad CRCs) and the pulse module's equal steps would take for a bug
            "timeout_s": 2.0,
            "retries": 2,
            "retry_backoff_s": 0.05,
            "poll_interval_s": 0.5,
        },
        [
            {"meter_id": "WM-0001", "unit_id": 1},
            {"meter_id": "WM-0002", "unit_id": 2},
            {
                "meter_id": "PULSE-1",
                "unit_id": PULSE_UNIT,
                "profile": "pulse_counter",
                # 10 m3 every half second: a wrap is judged by the meter's maximum flow
                "parameters": {"litres_per_pulse": LITRES_PER_PULSE, "max_flow_m3h": 1_000_000},
            },
        ],
        gateway_id="gw-rtu",
    )

    def enough(taken: list[Reading]) -> bool:  # unit 2's bad CRCs each wait out the timeout: polls, not seconds
        counts = Counter(r.meter_id for r in taken)
        return counts["WM-0001"] >= 5 and counts["PULSE-1"] >= 5 and counts["WM-0002"] >= 1

    try:
        gateway, taken = run_config_until(parse_config_text(text), enough)
    finally:
        simulator.stop()
    by_meter: dict[str, list[Reading]] = defaultdict(list)
    for reading in taken:
        by_meter[reading.meter_id].append(reading)
    assert set(by_meter) == {"WM-0001", "WM-0002", "PULSE-1"}
    assert all(r.bus == "rtu-1" for r in taken)
    assert all(r.protocol == ("pulse" if r.meter_id == "PULSE-1" else "modbus-rtu") for r in taken)
    assert len(by_meter["WM-0001"]) >= 5
    # unit 2's first two replies had bad CRCs: retried within its first poll, which still succeeded
    assert [f.address for f in plan.log] == [2, 2]
    assert gateway.health.meters["WM-0002"].failed_polls == 0
    assert gateway.health.buses["rtu-1"].attempts - gateway.health.buses["rtu-1"].successes == 2
    volumes = [r.volume_m3 for r in by_meter["PULSE-1"]]
    assert len(volumes) >= 5
    span = 2**32 * LITRES_PER_PULSE / 1000
    assert volumes[0] == pytest.approx(span - 25.0)
    steps = [b - a for a, b in itertools.pairwise(volumes)]
    assert steps == pytest.approx([1000 * LITRES_PER_PULSE / 1000] * len(steps))  # straight through the wrap
    assert volumes[-1] > span
