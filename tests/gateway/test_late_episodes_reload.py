"""A meter answering late is warned of once an episode across reloads of the gateway's file, not once
a reload (gateway.late_episodes).

Before, each bus's transport kept its late answers' episodes, and a reload makes the transports
anew: a meter answering after the timeout at every poll was warned of again at every reload (an
operator's automation reloading every 10 minutes: a warning every 10 minutes in place of one).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import MBusBusConfig, MeterConfig, ModbusTcpBusConfig, parse_config_text
from gateway.late_answers import LateAnswers
from gateway.late_episodes import LateEpisodes
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import bus_config_text, meters, running, until
from tests.services import free_port

RELOADS = 3
HINT = (
    "WM-0005 on tcp-1: unit 5 answered after the bus's 0.5 s timeout, so its polls fail as 'no answer' "
    "though it answers: raise the bus's timeout_s"
)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.late_answers" and r.levelno >= logging.WARNING]


def test_a_meter_answering_late_is_warned_of_once_across_reloads_through_apply_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Modbus TCP meter whose answers come 0.2 s after the bus's timeout, the file reloaded (the
    same file) each time a late answer of the new bus's was heard: one warning, and every late answer
    still counted in the bus's ``late_answers``. Before: a warning for each bus, 1 + 3 reloads."""

    async def scenario() -> tuple[int, int]:
        simulator = ModbusTcpSimulator(meters(1, first_unit=5))
        await simulator.start()
        proxy = ModbusTcpFaultProxy(
            "127.0.0.1", simulator.port, WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=0.7)])
        )
        await proxy.start()
        text = bus_config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            tmp_path / "s.sqlite",
            {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": proxy.port,
             "poll_interval_s": 1.0, "timeout_s": 0.5, "retries": 0, "jitter": 0.0},
            [{"meter_id": "WM-0005", "unit_id": 5}],
            gateway_id="gw-late-reload",
        )  # fmt: skip
        gateway = Gateway(parse_config_text(text))

        def late() -> int:
            bus = gateway.health.buses.get("tcp-1")
            return 0 if bus is None else bus.late_answers

        reloads = 0
        try:
            async with running(gateway):
                await until(lambda: late() >= 1, 20)
                for _ in range(RELOADS):
                    heard = late()
                    await gateway.apply_config(parse_config_text(text))
                    reloads += 1
                    await until(lambda heard=heard: late() > heard, 20)  # type: ignore[misc]
                return reloads, late()
        finally:
            await proxy.stop()
            await simulator.stop()

    with caplog.at_level(logging.INFO, logger="gateway.late_answers"):
        reloads, counted = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert reloads == RELOADS and counted >= RELOADS + 1  # each bus heard one at least, all counted
    assert _warnings(caplog) == [HINT]  # before: 4, one for each bus


def _said(caplog: pytest.LogCaptureFixture, episodes: LateEpisodes, bus: ModbusTcpBusConfig, unit: int) -> int:
    """Warnings said by a late answer from ``unit`` on a new transport of ``bus`` (a reload's) with
    the gateway's ``episodes``."""
    episodes.configured([bus])
    before = len(_warnings(caplog))
    LateAnswers(bus, monotonic=lambda: 10.0, episodes=episodes.of_bus(bus.name)).heard(unit)
    return len(_warnings(caplog)) - before


def test_what_a_reload_changed_begins_a_late_answer_episode_afresh(caplog: pytest.LogCaptureFixture) -> None:
    """Kept while the meters at the unit and the bus's settings are the same (another meter added
    elsewhere on the bus, a poll interval changed); begun afresh, said at the next late answer, once
    the meter was removed, its unit changed, another meter was configured at the unit, or the bus's
    timeout changed (raised, and still too short); a bus removed is forgotten."""
    slow, other = MeterConfig("WM-0005", 5), MeterConfig("WM-0006", 6)
    bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", 502, (slow,), timeout_s=0.5)
    episodes = LateEpisodes()
    with caplog.at_level(logging.INFO, logger="gateway.late_answers"):
        said = [
            _said(caplog, episodes, bus, 5),  # its first: said
            _said(caplog, episodes, bus, 5),  # the same file again: not
            _said(caplog, episodes, replace(bus, meters=(slow, other), poll_interval_s=60.0), 5),  # not
            _said(caplog, episodes, replace(bus, meters=(other,)), 5),  # removed: unit 5 is the bus's alone
            _said(caplog, episodes, replace(bus, meters=(other,)), 5),  # not
            _said(caplog, episodes, bus, 5),  # configured at unit 5 again: named
            _said(caplog, episodes, replace(bus, meters=(slow, replace(other, unit_id=5))), 5),  # two at unit 5
            _said(caplog, episodes, replace(bus, meters=(replace(slow, unit_id=7),)), 7),  # its unit changed
            _said(caplog, episodes, replace(bus, meters=(replace(slow, unit_id=7),), timeout_s=0.8), 7),
            _said(caplog, episodes, replace(bus, meters=(replace(slow, unit_id=7),), timeout_s=0.8), 7),  # not
        ]
    assert said == [1, 0, 0, 1, 0, 1, 1, 1, 1, 0], _warnings(caplog)
    assert "raise the bus's timeout_s" in _warnings(caplog)[-1] and "0.8 s timeout" in _warnings(caplog)[-1]
    mbus = MBusBusConfig("mbus-1", "/dev/null", (MeterConfig("FLAT-1", 1),))
    episodes.configured([mbus])  # tcp-1 no longer configured: forgotten
    with caplog.at_level(logging.INFO, logger="gateway.late_answers"):
        assert _said(caplog, episodes, replace(bus, meters=(replace(slow, unit_id=7),), timeout_s=0.8), 7) == 1


def test_an_m_bus_meter_s_late_answer_episode_goes_on_across_reloads_until_its_address_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Charged to the meter (its E5h or long frame: gateway.mbus), kept while its entry is the same;
    its primary address corrected, or its bus's answer window raised, begins it afresh."""
    slow = MeterConfig("SLOW-1", 1)
    bus = MBusBusConfig("mbus-1", "/dev/null", (slow,), answer_timeout_s=0.3)
    episodes = LateEpisodes()

    def said(bus: MBusBusConfig) -> int:
        episodes.configured([bus])
        before = len(_warnings(caplog))
        LateAnswers(bus, monotonic=lambda: 10.0, episodes=episodes.of_bus(bus.name)).heard_from(bus.meters[0])
        return len(_warnings(caplog)) - before

    moved = replace(bus, meters=(replace(slow, unit_id=2),))
    with caplog.at_level(logging.INFO, logger="gateway.late_answers"):
        counts = [said(bus), said(bus), said(moved), said(moved), said(replace(moved, answer_timeout_s=0.5))]
    assert counts == [1, 0, 1, 0, 1], _warnings(caplog)
    assert "primary address 2 answered after the bus's 0.5 s answer window" in _warnings(caplog)[-1]
