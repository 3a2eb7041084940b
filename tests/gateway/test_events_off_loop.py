"""A running gateway stores its events in the spool off its event loop (gateway.service: its event
writer stores them in a thread, in the order emitted, as its readings' writer does).

Before, each event (a meter going offline or online, the spool damaged, full or overflowing, the
gateway stopping) was a SQLite write and fsync on the event loop: a bus dying took every meter on it
offline within a poll round, one write each, and the gateway's MQTT keepalives and every other bus's
polls waited behind them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config_text
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import config_text, meters, running, until
from tests.services import free_port

METERS = 12


def _recording_threads(gateway: Gateway) -> list[tuple[str, threading.Thread]]:
    """From now on each event the gateway's spool stores is recorded with the thread that stored it."""
    stored: list[tuple[str, threading.Thread]] = []
    add_message = gateway.spool.add_message

    def recorded(topic: str, payload: bytes, *args: Any, **kwargs: Any) -> int:
        dropped = add_message(topic, payload, *args, **kwargs)
        event = json.loads(payload)
        stored.append((f"{event['event']} {event.get('meter_id', '')}".strip(), threading.current_thread()))
        return dropped

    gateway.spool.add_message = recorded  # type: ignore[method-assign]
    return stored


def test_a_dead_bus_s_offline_events_are_stored_off_the_loop_in_order_before_the_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every meter of a bus answers, then the bus dies (its simulator stops): each meter's
    ``meter_offline`` is stored, none on the loop's thread. The spool holds them in the order the
    gateway emitted them (its `event …` log lines), each meter's offline state with its event, and the
    ``gateway_stopped`` event last, stored before ``run`` returns."""

    async def scenario() -> tuple[Gateway, list[tuple[str, threading.Thread]], threading.Thread]:
        simulator = ModbusTcpSimulator(meters(METERS))
        await simulator.start()
        text = config_text(
            f"mqtt://127.0.0.1:{free_port()}",  # no broker: every event stays in the spool
            {"b": simulator.port},
            {"b": range(1, METERS + 1)},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-events",
            poll_interval_s=0.1,
            retries=0,
            extra_top="[health]\noffline_after = 1\n",
        )
        gateway = Gateway(parse_config_text(text))
        stored = _recording_threads(gateway)
        health = gateway.health.meters
        try:
            async with running(gateway, drain_timeout=0.1):
                # (all of them tracked: all() of none held before the gateway had started its buses)
                await until(lambda: len(health) == METERS and all(m.last_good is not None for m in health.values()), 30)
                assert len(health) == METERS and all(m.last_good is not None for m in health.values())
                await simulator.stop()
                await until(lambda: all(m.offline_since is not None for m in health.values()), 30)
        finally:
            await simulator.stop()
        return gateway, stored, threading.current_thread()

    with caplog.at_level(logging.INFO, logger="gateway.service"):
        gateway, stored, loop_thread = asyncio.run(asyncio.wait_for(scenario(), 90))
    emitted = [
        r.getMessage().split(":")[0].removeprefix("event ")
        for r in caplog.records
        if r.name == "gateway.service" and r.getMessage().startswith("event ")
    ]
    offline = [name for name in emitted if name.startswith("meter_offline ")]
    assert len(offline) == METERS
    assert [name for name, thread in stored if thread is loop_thread] == []
    assert [name for name, _ in stored] == emitted  # every event stored, in the order emitted
    assert emitted[-1] == "gateway_stopped"
    spool = Spool(tmp_path / "s.sqlite")
    try:
        in_spool = [json.loads(payload) for _, _, payload in spool.messages_after(0, 1000)]
        kept = [spool.load_meter_health(f"WM-{unit:04d}") for unit in range(1, METERS + 1)]
    finally:
        spool.close()
    assert [f"{e['event']} {e.get('meter_id', '')}".strip() for e in in_spool] == emitted
    assert gateway.status()["events_not_spooled"] == 0
    assert all(row is not None and row[1] is not None for row in kept)  # each meter stored offline


def test_health_saved_while_an_event_is_being_stored_is_not_stored_over_by_the_event_s_older_state(
    tmp_path: Path,
) -> None:
    """WM-0001 goes offline (one failed poll): its ``meter_offline`` is stored in the event writer's
    thread with its state then (1 failure), on a slow disk (held until the test lets it go). Meanwhile
    a second poll fails (2 failures) and the status interval saves the meters' health. The spool ends
    with 2: the health saved behind the event, not before it and then overwritten by its older state."""
    let_go = threading.Event()
    entered = threading.Event()

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(1))
        await simulator.start()
        text = config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            {"b": simulator.port},
            {"b": [1]},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-health",
            # its first poll at the start (no jitter); its next at the first midnight UTC at least half an
            # interval (12 h) after it (gateway.scheduler, BusScheduler._following): one poll, whenever it runs
            poll_interval_s=86400,
            retries=0,
            extra_bus="jitter = 0\n",
            extra_top="[health]\noffline_after = 1\n",
        )
        gateway = Gateway(parse_config_text(text))
        add_message = gateway.spool.add_message

        def slow(*args: Any, **kwargs: Any) -> int:
            entered.set()
            let_go.wait(30)
            return add_message(*args, **kwargs)

        gateway.spool.add_message = slow  # type: ignore[method-assign]
        try:
            async with running(gateway, drain_timeout=0.1):
                health = gateway.health.meters
                await until(lambda: "WM-0001" in health and health["WM-0001"].last_good is not None, 30)
                assert health["WM-0001"].last_good is not None
                event = gateway.health.poll_done("WM-0001", False, error="b: silent")
                assert event is not None and event["event"] == "meter_offline"
                gateway.emit(event)
                assert await asyncio.to_thread(entered.wait, 30)
                assert gateway.health.poll_done("WM-0001", False, error="b: silent") is None
                gateway.save_health()
                let_go.set()
        finally:
            let_go.set()
            await simulator.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    spool = Spool(tmp_path / "s.sqlite")
    try:
        kept = spool.load_meter_health("WM-0001")
    finally:
        spool.close()
    assert kept is not None and kept[1] is not None and kept[2] == 2
