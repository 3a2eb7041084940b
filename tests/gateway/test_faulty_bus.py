"""A bus with slow, silent and garbling meters: the others keep their poll rate; failures are
counted and retried as configured. A clean bus in the same gateway is the baseline."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from aquami.contracts.reads import Reading
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.fault_proxy import FaultProxy
from tests.gateway.helpers import config_text, meters, run_recording

pytestmark = pytest.mark.services

GOOD = range(1, 7)
SLOW, SILENT, GARBLING = 7, 8, 9
RETRIES = 2
# The faulty bus's timeout: the silent meter costs the bus this, RETRIES + 1 times a poll. Every other
# answer on it must fit in it even on a loaded machine (an attempt timed out is a failed attempt the wire
# did not see, and fails the count at the end): the slow meter's delay leaves 0.3 s of it, as the good
# meters' milliseconds do 0.4 s (with 0.2 s in 0.3 s, CI timed out one slow answer in eight).
TIMEOUT_S = 0.4
SLOW_S = 0.1


def test_slow_silent_and_garbling_meters_do_not_starve_the_others(tmp_path: Path, mosquitto) -> None:
    plan = WireFaultPlan(
        [
            WireFault(WireFaultKind.SLOW, address=SLOW, delay_s=SLOW_S),
            WireFault(WireFaultKind.NO_REPLY, address=SILENT),
            WireFault(WireFaultKind.BAD_CHECKSUM, address=GARBLING),
        ]
    )
    taken: list[Reading] = []

    async def scenario() -> Gateway:
        faulty = ModbusTcpSimulator(meters(9))
        clean = ModbusTcpSimulator(meters(6, first_unit=11))
        await faulty.start()
        await clean.start()
        proxy = FaultProxy(faulty.port, plan)
        await proxy.start()
        text = config_text(
            mosquitto.url,
            {"faulty": proxy.port, "clean": clean.port},
            {"faulty": range(1, 10), "clean": range(11, 17)},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-faults",
            poll_interval_s=2.0,  # a silent meter's poll holds the bus up to 1.2 s: headroom for the others under load
            timeout_s=TIMEOUT_S,
            retries=RETRIES,
            # the baseline must not fail: its answers take milliseconds, but a loaded machine may hold one
            # past a short timeout, and one such attempt in ~36 made its success rate fall short of 1.0
            bus_timing={"clean": {"timeout_s": 2.0}},
            extra_top="[health]\noffline_after = 2\n",
        )
        gateway = Gateway(parse_config_text(text))
        await run_recording(gateway, 12.0, taken)
        await proxy.stop()
        await faulty.stop()
        await clean.stop()
        return gateway

    gateway = asyncio.run(scenario())
    per_meter = Counter(r.meter_id for r in taken)
    baseline = min(per_meter[f"WM-{unit:04d}"] for unit in range(11, 17))  # the clean bus
    assert baseline >= 5
    for unit in [*GOOD, SLOW]:  # the faulty bus's answering meters keep the clean bus's rate
        assert per_meter[f"WM-{unit:04d}"] >= baseline - 1, (unit, per_meter, baseline)
    assert per_meter[f"WM-{SILENT:04d}"] == 0 and per_meter[f"WM-{GARBLING:04d}"] == 0
    on_wire = Counter((fault.address, fault.kind) for fault in plan.log)
    for unit, kind in ((SILENT, WireFaultKind.NO_REPLY), (GARBLING, WireFaultKind.BAD_CHECKSUM)):
        meter = gateway.health.meters[f"WM-{unit:04d}"]
        assert meter.failed_polls >= 2 and meter.failed_polls == meter.polls and meter.last_good is None
        # every failed poll went to the wire once plus RETRIES times (the last may be cut by the stop)
        attempts = on_wire[unit, kind]
        assert meter.failed_polls * (RETRIES + 1) <= attempts <= (meter.failed_polls + 1) * (RETRIES + 1)
        assert meter.offline_since is not None
    # every slow answer became a reading, but the last (cut by the stop) and, on a very loaded machine, an
    # attempt whose delay ran past the timeout and was tried again (CI, with 0.2 s of delay against 0.3 s:
    # 8 on the wire, 7 read)
    assert 0 <= on_wire[SLOW, WireFaultKind.SLOW] - per_meter[f"WM-{SLOW:04d}"] <= 2
    faulty_bus, clean_bus = gateway.health.buses["faulty"], gateway.health.buses["clean"]
    assert clean_bus.success_rate == 1.0
    # the bus counts every failed attempt: each failed poll's RETRIES + 1, none the wire did not see
    # (a slow answer the timeout ran out on is a failed attempt too)
    failed_attempts = faulty_bus.attempts - faulty_bus.successes
    failed_polls = sum(gateway.health.meters[f"WM-{unit:04d}"].failed_polls for unit in (SILENT, GARBLING))
    on_wire_failures = on_wire[SILENT, WireFaultKind.NO_REPLY] + on_wire[GARBLING, WireFaultKind.BAD_CHECKSUM]
    slow_timed_out = on_wire[SLOW, WireFaultKind.SLOW] - per_meter[f"WM-{SLOW:04d}"]  # (see above: 0 to 2)
    assert failed_polls * (RETRIES + 1) <= failed_attempts <= on_wire_failures + slow_timed_out
