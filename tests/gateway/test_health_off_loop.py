"""A running gateway reads and writes its spool off its event loop: the meters' health saved at each
status interval, at a reload and at the stop; the events counted for the health status; the room
looked at again under ``stop_polling`` while the spool is short of it; each meter's health loaded
as its bus starts; the spool closed as the gateway stops.

Before, each was a SQLite statement on the event loop (a write an fsync, tens of ms on an SD card,
longer behind the spool's lock), while the gateway's MQTT keepalives and every bus's polls waited.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.config import parse_config_text
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import config_text, meters, running, until
from tests.services import free_port

_SPOOL_SOURCE = sys.modules[Spool.__module__].__file__


class StatementsOnThreads:
    """The spool's SQLite connection, counting the calls of the spool's methods that run statements
    (by the outermost spool method on the stack: ``is_full``, not the ``_room`` it runs), on the event
    loop's thread and on any."""

    def __init__(self, spool: Spool, loop_thread: threading.Thread) -> None:
        self._db = spool._db
        self._loop_thread = loop_thread
        self._last_call = threading.local()  # each thread's call counted last: its statements count once
        self.on_loop: Counter[str] = Counter()
        self.anywhere: Counter[str] = Counter()
        spool._db = self  # type: ignore[assignment]

    def _record(self) -> None:
        frame: Any = sys._getframe(2)
        call = None
        while frame is not None:
            if frame.f_code.co_filename == _SPOOL_SOURCE and frame.f_code.co_name != "mended":
                call = frame
            frame = frame.f_back
        if call is None or getattr(self._last_call, "frame", None) is call:
            return
        self._last_call.frame = call
        self.anywhere[call.f_code.co_name] += 1
        if threading.current_thread() is self._loop_thread:
            self.on_loop[call.f_code.co_name] += 1

    def execute(self, *args: Any) -> Any:
        self._record()
        return self._db.execute(*args)

    def executemany(self, *args: Any) -> Any:
        self._record()
        return self._db.executemany(*args)

    def executescript(self, *args: Any) -> Any:
        self._record()
        return self._db.executescript(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _config(port: int, units: range, spool: Path) -> str:
    return config_text(
        f"mqtt://127.0.0.1:{free_port()}",  # no broker: the events wait in the spool
        {"b": port},
        {"b": units},
        str(spool),
        gateway_id="gw-health-loop",
        poll_interval_s=0.1,
        retries=0,
        extra_top="[health]\nstatus_interval_s = 0.2\noffline_after = 2\n",
        extra_spool='policy = "stop_polling"\n',
        extra_bus="jitter = 0\n",  # both first polls under way before the first is refused
    )


def test_status_reload_room_and_health_reach_the_spool_off_the_event_loop(tmp_path: Path) -> None:
    """A gateway under ``stop_polling`` on a disk with no room (its reserve beyond any disk): every
    reading is refused, polling stops, and the room is looked at again as each poll falls due. The
    status goes out and the meters' health is saved every 0.2 s. A reload drops WM-0001 (its health
    saved first) and adds WM-0003, which an earlier run left offline (its health loaded). The room
    comes back: polling resumes, WM-0003 answers (``meter_online``, offline since the earlier run's
    time). The gateway stops. No SQLite statement of the spool on the event loop's thread."""
    path = tmp_path / "s.sqlite"
    earlier = Spool(path)
    earlier.save_meter_health([("WM-0003", "2026-12-01T00:00:00Z", "2026-12-01T06:00:00Z", 9)])
    earlier.close()

    async def scenario() -> tuple[StatementsOnThreads, dict[str, Any]]:
        simulator = ModbusTcpSimulator(meters(3))
        await simulator.start()
        gateway = Gateway(parse_config_text(_config(simulator.port, range(1, 3), path)))
        statements = StatementsOnThreads(gateway.spool, threading.current_thread())
        reserve, gateway.spool.reserve_bytes = gateway.spool.reserve_bytes, 2**62
        health = gateway.health.meters
        try:
            async with running(gateway, drain_timeout=0.1):
                await until(lambda: gateway.spool_full and statements.anywhere["is_full"] >= 3, 20)
                await until(lambda: statements.anywhere["messages_waiting"] >= 2, 20)
                await until(lambda: statements.anywhere["save_meter_health"] >= 1, 20)
                assert gateway.spool_full and gateway.readings_spooled == 0
                await gateway.apply_config(parse_config_text(_config(simulator.port, range(2, 4), path)))
                assert health["WM-0003"].consecutive_failures == 9  # loaded as its bus started
                gateway.spool.reserve_bytes = reserve
                await until(lambda: health["WM-0003"].offline_since is None, 20)
                await until(lambda: not gateway.spool_full, 20)
        finally:
            await simulator.stop()
        return statements, gateway.status()

    statements, status = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert dict(statements.on_loop) == {}
    assert status["readings_spooled"] >= 1 and status["readings_not_spooled"] >= 1
    spool = Spool(path)
    try:
        events = [json.loads(payload) for _, _, payload in spool.messages_after(0, 1000)]
        dropped = spool.load_meter_health("WM-0001")
    finally:
        spool.close()
    names = [e["event"] for e in events]
    assert names.index("spool_full") < names.index("spool_resumed") and names[-1] == "gateway_stopped"
    online = [e for e in events if e["event"] == "meter_online" and e["meter_id"] == "WM-0003"]
    assert [e["offline_since"] for e in online] == ["2026-12-01T06:00:00Z"]
    assert dropped is not None and dropped[2] >= 1  # its refused polls, saved by the reload


def test_a_reload_returns_once_the_health_it_saves_is_stored_behind_an_event_being_stored(tmp_path: Path) -> None:
    """WM-0001's ``meter_offline`` is being stored in the event writer's thread, on a slow disk (held
    until the test lets it go), when a second poll fails (2 failures) and a reload drops WM-0001. The
    reload saves the meters' health first (a meter dropped and configured again is loaded from the
    spool), queued behind the event: it returns only once that is stored, WM-0001 with 2 failures.
    Each meter is polled once, at the start (86,400 s apart: the next poll is at least half that on)."""
    let_go = threading.Event()
    entered = threading.Event()
    saved: list[tuple[str, int]] = []

    async def scenario() -> list[tuple[str, int]]:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()

        def config(units: list[int]) -> str:
            return config_text(
                f"mqtt://127.0.0.1:{free_port()}",
                {"b": simulator.port},
                {"b": units},
                str(tmp_path / "s.sqlite"),
                gateway_id="gw-reload-health",
                poll_interval_s=86400,
                retries=0,
                extra_bus="jitter = 0\n",
                extra_top="[health]\noffline_after = 1\n",
            )

        gateway = Gateway(parse_config_text(config([1, 2])))
        add_message, save_meter_health = gateway.spool.add_message, gateway.spool.save_meter_health

        def slow(*args: Any, **kwargs: Any) -> int:
            entered.set()
            let_go.wait(30)
            return add_message(*args, **kwargs)

        def recorded(rows: Any) -> None:
            rows = list(rows)
            save_meter_health(rows)
            saved.extend((meter_id, failures) for meter_id, _, _, failures in rows)

        gateway.spool.add_message = slow  # type: ignore[method-assign]
        gateway.spool.save_meter_health = recorded  # type: ignore[method-assign]
        health = gateway.health.meters
        try:
            async with running(gateway, drain_timeout=0.1):
                await until(lambda: len(health) == 2 and all(m.last_good is not None for m in health.values()), 30)
                assert len(health) == 2 and all(m.last_good is not None for m in health.values())
                event = gateway.health.poll_done("WM-0001", False, error="b: silent")
                assert event is not None and event["event"] == "meter_offline"
                gateway.emit(event)
                assert await asyncio.to_thread(entered.wait, 30)
                assert gateway.health.poll_done("WM-0001", False, error="b: silent") is None
                reload = asyncio.create_task(gateway.apply_config(parse_config_text(config([2]))))
                await until(lambda: bool(gateway._event_writes) or reload.done(), 30)  # its save queued
                let_go.set()
                await reload
                at_reload = list(saved)
        finally:
            let_go.set()
            await simulator.stop()
        return at_reload

    at_reload = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert ("WM-0001", 2) in at_reload
    spool = Spool(tmp_path / "s.sqlite")
    try:
        kept = spool.load_meter_health("WM-0001")
    finally:
        spool.close()
    assert kept is not None and kept[1] is not None and kept[2] == 2


def test_the_first_health_status_lists_every_configured_meter_however_slow_their_stored_health_is_to_read(
    tmp_path: Path,
) -> None:
    """The gateway's start reads the meters' stored health in a thread (a slow SD card here: 0.5 s);
    the health status it publishes first lists every configured meter. Before, the status reporter
    started before the buses, so its first status (retained by the broker) could list none of them
    (seen once in a loaded CI: KeyError 'WM-0004' in tests/gateway/test_health.py)."""
    text = config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        {"b": free_port()},
        {"b": [1, 2]},
        str(tmp_path / "s.sqlite"),
        gateway_id="gw-first-status",
        poll_interval_s=86400,
        retries=0,
        extra_top="[health]\nstatus_interval_s = 0.2\n",
    )
    gateway = Gateway(parse_config_text(text))
    read_stored, publish_status = gateway.health.read_stored, gateway.publish_status
    listed: list[list[str]] = []

    def slow_read(meter_ids: Any) -> Any:
        threading.Event().wait(0.5)  # (a slow card, in the start's thread)
        return read_stored(meter_ids)

    def recording(state: Any = "online", events_waiting: int | None = None) -> None:
        listed.append(sorted(gateway.status(state, events_waiting)["meters"]))
        publish_status(state, events_waiting)

    gateway.health.read_stored = slow_read  # type: ignore[method-assign]
    gateway.publish_status = recording  # type: ignore[method-assign]

    async def scenario() -> None:
        async with running(gateway):
            await until(lambda: len(listed) >= 2, 10)

    asyncio.run(scenario())
    assert listed and all(meter_ids == ["WM-0001", "WM-0002"] for meter_ids in listed), listed
