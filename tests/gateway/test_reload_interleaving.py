"""A reload's await points, where a poll, a command or the gateway's own start can now run in between:
since the gateway reads and writes its spool off the event loop (each meter's stored health read in a
thread as its bus starts, the health saved by the reload awaited), those are thread hops.

- A read-now of a meter whose reading is being spooled while a reload drops that meter: its outcome
  came to the health after the meter was forgotten, which tracked it again (bus "") and loaded its
  stored health on the event loop; it stayed in the health status, no longer configured.
- A reload taken while the gateway starts (a command waiting in a persistent session comes as it
  connects): the start's buses and the reload's were both started, one set's stop event lost, its
  scheduler polling on after the gateway stopped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.config import parse_config_text
from gateway.health import StoredMeter
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import config_text, meters, running, until
from tests.services import free_port


def _config(port: int, units: list[int], spool: Path, poll_interval_s: float) -> str:
    return config_text(
        f"mqtt://127.0.0.1:{free_port()}",  # no broker: what is spooled waits there
        {"b": port},
        {"b": units},
        str(spool),
        gateway_id="gw-reload-between",
        poll_interval_s=poll_interval_s,
        retries=0,
        extra_bus="jitter = 0\n",
    )


def test_a_read_now_answered_after_a_reload_dropped_its_meter_leaves_it_forgotten(tmp_path: Path) -> None:
    """WM-0001 and WM-0002, each polled once at the start (86,400 s apart). A read-now of WM-0001 is
    answered; its reading is being spooled (the spool's append held until the test lets it go) when a
    reload drops WM-0001 and returns. Then the reading is stored and the read-now replies: WM-0001
    stays forgotten (not in the health status), its stored health not read on the event loop.
    Before: tracked again on bus "", its stored health loaded on the loop's thread."""
    let_go = threading.Event()
    entered = threading.Event()
    loaded_on_loop: list[str] = []

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        path = tmp_path / "s.sqlite"
        gateway = Gateway(parse_config_text(_config(simulator.port, [1, 2], path, 86400)))
        loop_thread = threading.current_thread()
        append, load_meter_health = gateway.spool.append, gateway.spool.load_meter_health

        def held(readings: Iterable[dict[str, Any]]) -> Any:
            entered.set()
            let_go.wait(30)
            return append(readings)

        def loading(meter_id: str) -> StoredMeter | None:
            if threading.current_thread() is loop_thread:
                loaded_on_loop.append(meter_id)
            return load_meter_health(meter_id)

        gateway.spool.load_meter_health = loading  # type: ignore[method-assign]
        health = gateway.health.meters
        try:
            async with running(gateway, drain_timeout=0.1):
                await until(lambda: len(health) == 2 and all(m.last_good is not None for m in health.values()), 30)
                assert gateway._commands is not None and all(m.last_good is not None for m in health.values())
                gateway.spool.append = held  # type: ignore[method-assign]
                read_now = asyncio.create_task(gateway._commands.read_now({"meter_id": "WM-0001"}))
                assert await asyncio.to_thread(entered.wait, 30)  # answered; its reading being spooled
                await gateway.apply_config(parse_config_text(_config(simulator.port, [2], path, 86400)))
                assert "WM-0001" not in health
                let_go.set()
                reply = await read_now
                status = gateway.status()
        finally:
            let_go.set()
            await simulator.stop()
        return reply, status

    reply, status = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert reply["ok"] is True and reply["reading"]["meter_id"] == "WM-0001"  # read, and spooled
    assert sorted(status["meters"]) == ["WM-0002"]
    assert loaded_on_loop == []


def test_a_reload_taken_as_the_gateway_starts_leaves_one_set_of_buses_and_stops_it(tmp_path: Path) -> None:
    """The gateway starts, reading its meters' stored health in a thread (held until the test lets it
    go); a reload to WM-0002 alone comes meanwhile. One set of buses runs, with WM-0002 alone, and
    once the gateway has stopped no bus's scheduler runs on. Before: the reload started its buses
    while the start's were still to come (or the other way round), both ran, and one set's stop event
    was lost: its scheduler ran on after the gateway stopped."""
    let_go = threading.Event()
    entered = threading.Event()

    def schedulers_running() -> list[asyncio.Task[Any]]:
        return [
            task
            for task in asyncio.all_tasks()
            if not task.done() and getattr(task.get_coro(), "__qualname__", "") == "BusScheduler.run"
        ]

    async def scenario() -> tuple[int, list[str], int]:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        path = tmp_path / "s.sqlite"
        gateway = Gateway(parse_config_text(_config(simulator.port, [1, 2], path, 0.2)))
        read_stored = gateway.health.read_stored
        first = [True]

        def held(meter_ids: Iterable[str]) -> dict[str, StoredMeter | None]:
            if first[0]:  # the start's read
                first[0] = False
                entered.set()
                let_go.wait(30)
            return read_stored(meter_ids)

        gateway.health.read_stored = held  # type: ignore[method-assign]
        try:
            async with running(gateway, drain_timeout=0.1):
                assert await asyncio.to_thread(entered.wait, 30)  # the gateway starting
                reload = asyncio.create_task(
                    gateway.apply_config(parse_config_text(_config(simulator.port, [2], path, 0.2)))
                )
                await asyncio.sleep(0)  # the reload begun: up to its first wait
                let_go.set()
                await reload
                await until(lambda: len(schedulers_running()) >= 1, 10)
                running_meanwhile = len(schedulers_running())
                polled = sorted(m for s in gateway.schedulers.values() for m in s.meters)
        finally:
            let_go.set()
            await simulator.stop()
        return running_meanwhile, polled, len(schedulers_running())

    running_meanwhile, polled, running_after = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert polled == ["WM-0002"]
    assert (running_meanwhile, running_after) == (1, 0)
