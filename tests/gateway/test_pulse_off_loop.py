"""A pulse counter's count is unwrapped off the gateway's event loop (gateway.modbus_transport: the
wrap, which reads and writes its state in the spool, runs in a thread, as a Modbus meter's serial
number check does).

Before, a pulse counter's wrap read the state kept in the spool when it was first built, and each
poll wrote the new state there, on the event loop: SQLite blocks it, and with it the gateway's MQTT
keepalives and every bus's polls.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aquami.ports import free_port
from firmware_protocols.modbus import load_profile
from gateway.config import MeterConfig, ModbusTcpBusConfig, load_config
from gateway.modbus_transport import ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.pulse import PulseState
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.events import Burst
from simulators.meter_model import MeterModel
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.rig.meters import PulseCounter
from tests.gateway.helpers import PulseModule, bus_config_text, running, until

LITRES_PER_PULSE = 10.0
COUNT_M3 = LITRES_PER_PULSE / 1000


class _PulseStateOnThreads:
    """The gateway's spool, as its pulse counters' store, each read and write recording the thread it ran on."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.reads: list[tuple[str, threading.Thread]] = []
        self.saves: list[tuple[str, threading.Thread]] = []

    def load_pulse(self, meter_id: str) -> PulseState | None:
        self.reads.append((meter_id, threading.current_thread()))
        return self.spool.load_pulse(meter_id)

    def load_wrap(self, meter_id: str) -> tuple[float | None, int]:
        self.reads.append((meter_id, threading.current_thread()))
        return self.spool.load_wrap(meter_id)

    def save_pulse(
        self,
        meter_id: str,
        last_m3: float,
        offset_m3: float,
        at: datetime,
        count_m3: float,
        before_restart: tuple[float, float] | None = None,
    ) -> None:
        self.saves.append((meter_id, threading.current_thread()))
        self.spool.save_pulse(meter_id, last_m3, offset_m3, at, count_m3, before_restart)


def test_pulse_counter_polls_read_and_write_the_spool_off_the_event_loop(tmp_path: Path) -> None:
    """PULSE-1, with a state kept by the gateway's previous run (a register at 500 m³ on a count of
    0): its state read, its count published on from 500 m³. PULSE-2, with an earlier version's row
    only: both read, its count published as it is. Each polled twice, each poll's state written.
    Every read and write of the spool on another thread than the event loop's, and the state kept
    the register published last."""
    installed = datetime.now(UTC) - timedelta(days=2)
    wired = installed + timedelta(days=1)
    models = [MeterModel(f"M-{unit}", installed=installed, seed=unit) for unit in (1, 2)]
    for model in models:  # a leak since the modules were wired: each count well above 0
        model.inject(Burst(start=wired, rate_lph=1000.0))
    counters = [PulseCounter(unit, model, LITRES_PER_PULSE, wired) for unit, model in zip((1, 2), models, strict=True)]
    earlier = Spool(tmp_path / "s.sqlite")
    earlier.save_pulse("PULSE-1", 0.0, 500.0, wired, COUNT_M3)
    earlier._db.execute("INSERT INTO pulse_wraps (meter_id, last_m3, wraps) VALUES ('PULSE-2', 0.0, 0)")
    earlier.close()

    async def scenario() -> tuple[list[dict[str, Any]], _PulseStateOnThreads, threading.Thread]:
        simulator = ModbusTcpSimulator(counters)
        await simulator.start()
        try:
            bus = {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": simulator.port}
            meters = [
                {
                    "meter_id": f"PULSE-{unit}",
                    "unit_id": unit,
                    "profile": "pulse_counter",
                    "parameters": {"litres_per_pulse": LITRES_PER_PULSE},
                }
                for unit in (1, 2)
            ]
            config = tmp_path / "gw.toml"
            config.write_text(
                bus_config_text(
                    f"mqtt://127.0.0.1:{free_port()}",
                    tmp_path / "s.sqlite",
                    {**bus, "poll_interval_s": 3600},
                    meters,
                    gateway_id="g",
                )
            )
            gateway = Gateway(load_config(config), config_path=config)
            store = _PulseStateOnThreads(gateway.spool)
            gateway.profiles = ProfileBook(store)
            async with running(gateway):
                await until(lambda: gateway._commands is not None, 10)
                assert gateway._commands is not None
                replies = [
                    await gateway._commands.read_now({"meter_id": f"PULSE-{unit}"}) for _ in range(2) for unit in (1, 2)
                ]
            return replies, store, threading.current_thread()
        finally:
            await simulator.stop()

    replies, store, loop_thread = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [reply["ok"] for reply in replies] == [True] * 4, replies
    volumes = {reply["meter_id"]: reply["reading"]["volume_m3"] for reply in replies[2:]}
    assert [meter_id for meter_id, _ in store.reads] == ["PULSE-1", "PULSE-2", "PULSE-2"]  # (PULSE-2: both)
    assert [meter_id for meter_id, _ in store.saves] == ["PULSE-1", "PULSE-2"] * 2
    assert [meter_id for meter_id, thread in store.reads + store.saves if thread is loop_thread] == []
    after = Spool(tmp_path / "s.sqlite")
    try:
        kept = {meter_id: after.load_pulse(meter_id) for meter_id in ("PULSE-1", "PULSE-2")}
    finally:
        after.close()
    assert kept["PULSE-1"] is not None and kept["PULSE-1"].offset_m3 == 500.0
    assert kept["PULSE-2"] is not None and kept["PULSE-2"].offset_m3 == 0.0
    for meter_id, state in kept.items():
        assert state is not None
        assert state.last_m3 > 20  # (a day's leak at 1 m³/h since the modules were wired)
        assert round(state.offset_m3 + state.last_m3, 9) == volumes[meter_id]


class _HeldSave(_PulseStateOnThreads):
    """A pulse store whose writes wait for ``release``: a count being kept when its attempt is cancelled."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(spool)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.saved = threading.Event()

    def save_pulse(
        self,
        meter_id: str,
        last_m3: float,
        offset_m3: float,
        at: datetime,
        count_m3: float,
        before_restart: tuple[float, float] | None = None,
    ) -> None:
        self.entered.set()
        self.release.wait(30)
        super().save_pulse(meter_id, last_m3, offset_m3, at, count_m3, before_restart)
        self.saved.set()


def test_an_attempt_cancelled_while_its_count_is_kept_ends_once_it_is_kept(tmp_path: Path) -> None:
    """An attempt's time limit (or the gateway stopping) cancels it while its count is being written
    to the spool in its thread: the attempt ends only once the count is kept, as it did when the write
    ran on the loop, so that the bus's next attempt judges its count against it, never beside it."""
    meter = MeterConfig("PULSE-1", 10, "pulse_counter", {"litres_per_pulse": LITRES_PER_PULSE})
    module = PulseModule(10, load_profile("pulse_counter", {"litres_per_pulse": LITRES_PER_PULSE}), 1234)
    spool = Spool(tmp_path / "s.sqlite")
    store = _HeldSave(spool)

    async def scenario() -> tuple[bool, list[bool], float]:
        simulator = ModbusTcpSimulator([module])
        await simulator.start()
        bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", simulator.port, (meter,))
        transport = ModbusTcpTransport(bus, ProfileBook(store))
        try:
            read = asyncio.create_task(transport.read(meter))
            await asyncio.to_thread(store.entered.wait, 30)
            ended_once_saved: list[bool] = []
            read.add_done_callback(lambda _: ended_once_saved.append(store.saved.is_set()))
            read.cancel()
            done, _ = await asyncio.wait([read], timeout=0.5)  # (a write held: the attempt must not end)
            store.release.set()
            with pytest.raises(asyncio.CancelledError):
                await read
            again = await transport.read(meter)  # the same count, judged against the one kept
            return bool(done), ended_once_saved, again.volume_m3
        finally:
            store.release.set()
            await transport.close()
            await simulator.stop()

    try:
        ended_while_held, ended_once_saved, again_m3 = asyncio.run(asyncio.wait_for(scenario(), 60))
        kept = spool.load_pulse("PULSE-1")
    finally:
        spool.close()
    assert not ended_while_held
    assert ended_once_saved == [True]
    assert kept is not None and (kept.last_m3, kept.offset_m3) == (12.34, 0.0)
    assert again_m3 == 12.34
