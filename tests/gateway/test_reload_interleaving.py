"""A reload's await points, where a poll, a command or the gateway's own start can now run in between:
since the gateway reads and writes its spool off the event loop (each meter's stored health read in a
thread as its bus starts, the health saved by the reload awaited), those are thread hops.

- A read-now of a meter whose reading is being spooled while a reload drops that meter: its outcome
  came to the health after the meter was forgotten, which tracked it again (bus "") and loaded its
  stored health on the event loop; it stayed in the health status, no longer configured.
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
