"""A polled meter's failure episode outlives a reload of the gateway's file; a bus a reload closed is
not a meter's failure.

Before, each reload made the buses' schedulers anew, and with them each meter's episode: a dead
meter was warned of again at every reload (an operator's automation reloading every 10 minutes: 12
warnings in 2 hours in place of one and a reminder), and its "answers again after …" line told only
the time since the last reload. And a command still holding a scheduler the reload closed retried
"bus closed" with backoff and warned of the meter as failed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aquami.contracts.reads import Reading
from gateway.config import MeterConfig, ModbusTcpBusConfig, parse_config_text
from gateway.episodes import REMIND_EVERY_S
from gateway.poll_episodes import PolledEpisodes
from gateway.scheduler import BusScheduler, Polled
from gateway.service import Gateway
from gateway.transport import NoAnswer
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import StatelessTransport, bus_config_text, meters, running, until
from tests.services import free_port

RELOAD_EVERY_S = 0.6 * REMIND_EVERY_S  # on the episodes' clock, moved by the test
RELOADS = 10


def _said(caplog: pytest.LogCaptureFixture, meter_id: str) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "gateway.scheduler" and r.getMessage().startswith(f"{meter_id} on ")
    ]


def _more_than(items: list[str], count: int) -> Callable[[], bool]:
    return lambda: len(items) > count


def test_a_dead_meters_episode_goes_on_across_reloads_through_apply_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Modbus TCP meter at a port nobody listens on, the file reloaded every 0.6 × the reminder
    interval (10 reloads, 6 h on the episodes' clock), then the meter answers: one warning, a reminder
    every second reload (each an hour or more after the last said), and its answering again after
    the whole 6 h with every failed poll counted. Before: a first warning at each reload (11), and
    the end said the time since the last reload."""
    port = free_port()
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port,
         "poll_interval_s": 0.2, "timeout_s": 0.5, "retries": 0, "jitter": 0.0},
        [{"meter_id": "WM-0001", "unit_id": 1}],
        gateway_id="gw-episodes",
    )  # fmt: skip
    now = [0.0]
    failed: list[str] = []
    answered: list[str] = []

    async def scenario() -> None:
        gateway = Gateway(parse_config_text(text))
        gateway.poll_episodes = PolledEpisodes(monotonic=lambda: now[0])
        on_poll = gateway._on_poll

        def counted(meter: MeterConfig, reading: Reading | None, error: str | None) -> None:
            (answered if reading is not None else failed).append(meter.meter_id)
            on_poll(meter, reading, error)

        gateway._on_poll = counted  # type: ignore[method-assign]
        simulator = ModbusTcpSimulator(meters(1), port=port)
        try:
            async with running(gateway):
                await until(lambda: len(failed) >= 1, 20)
                for _ in range(RELOADS):
                    now[0] += RELOAD_EVERY_S
                    await gateway.apply_config(parse_config_text(text))
                    await until(_more_than(failed, len(failed)), 20)  # a poll of the new bus failed
                await simulator.start()
                await until(lambda: bool(answered), 20)
                now[0] += 100  # past the settle time (90 s)
                await until(lambda: any("answers again" in text for _, text in _said(caplog, "WM-0001")), 20)
        finally:
            await simulator.stop()

    with caplog.at_level(logging.INFO, logger="gateway.scheduler"):
        asyncio.run(asyncio.wait_for(scenario(), 120))
    said = _said(caplog, "WM-0001")
    first, *reminders, back = said
    assert first[0] == logging.WARNING and "failed after 1 attempt, the last: " in first[1], said
    assert len(reminders) == RELOADS // 2, said  # before: 10 more first warnings, one per reload
    for level, text in reminders:
        assert level == logging.WARNING and "still failing, " in text, said
    assert back == (logging.INFO, f"WM-0001 on tcp-1: answers again after 6 h, {len(failed):,} polls failed"), said


class Wired(StatelessTransport):
    """A meter that answers only at unit 5 (its true address): at any other it is silent."""

    async def read(self, meter: MeterConfig) -> Reading:
        if meter.unit_id != 5:
            raise NoAnswer(f"{meter.meter_id}: no answer from unit {meter.unit_id}")
        return Reading(meter.meter_id, datetime.now(UTC), 1.0, protocol="modbus-tcp", bus="tcp-1", address=5)


def _bus(units: dict[str, int]) -> ModbusTcpBusConfig:
    """Bus tcp-1 with each meter at its unit."""
    return ModbusTcpBusConfig("tcp-1", "127.0.0.1", 1, tuple(MeterConfig(m, u) for m, u in units.items()), retries=0)


def test_a_removed_meter_starts_afresh_and_a_corrected_address_keeps_its_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reloads as the gateway makes them (the memory told the configuration, a scheduler made anew):
    WM-1 removed and configured again begins a new episode, said whole; WM-2's unit changed from 4
    to 7 (still wrong) has its next failure said at once, a reminder naming unit 7, not an hour
    later; corrected to 5, its answer ends the episode with every failed poll, the earlier ones too."""
    now = [0.0]
    memory = PolledEpisodes(monotonic=lambda: now[0])

    def reloaded(units: dict[str, int]) -> BusScheduler:
        memory.configured([_bus(units)])
        return BusScheduler(
            _bus(units), Wired(), on_reading=lambda r: asyncio.sleep(0), settle_s=0.0, failing=memory.of_bus("tcp-1")
        )

    async def scenario() -> None:
        scheduler = reloaded({"WM-1": 3, "WM-2": 4})
        for _ in range(3):
            await scheduler.read_now("WM-1")
            await scheduler.read_now("WM-2")
        now[0] += 60
        scheduler = reloaded({"WM-2": 4})  # WM-1 removed
        await scheduler.read_now("WM-2")  # its episode goes on, quiet
        scheduler = reloaded({"WM-1": 3, "WM-2": 7})  # WM-1 configured again; WM-2's unit changed, still wrong
        await scheduler.read_now("WM-1")
        await scheduler.read_now("WM-2")
        await scheduler.read_now("WM-2")
        now[0] += 3000  # 51 min in all
        scheduler = reloaded({"WM-1": 3, "WM-2": 5})  # right at last
        await scheduler.read_now("WM-2")

    with caplog.at_level(logging.INFO, logger="gateway.scheduler"):
        asyncio.run(scenario())
    one, two = _said(caplog, "WM-1"), _said(caplog, "WM-2")
    assert len(one) == 2, one  # before the removal, and again once configured again
    for level, text in one:
        assert level == logging.WARNING and "failed after 1 attempt, the last: WM-1: no answer from unit 3" in text
    assert [level for level, _ in two] == [logging.WARNING, logging.WARNING, logging.INFO], two
    assert "failed after 1 attempt, the last: WM-2: no answer from unit 4" in two[0][1], two
    reminder = r"still failing, 5 polls failed since 20\d\d-.*, the last: WM-2: no answer from unit 7$"
    assert re.search(reminder, two[1][1]), two
    assert two[2][1] == "WM-2 on tcp-1: answers again after 51 min, 6 polls failed", two


class Counting(BusScheduler):
    """A scheduler that counts the attempts its polls make."""

    made = 0

    async def attempt(self, meter: MeterConfig) -> Reading:
        self.made += 1
        return await super().attempt(meter)


def test_a_bus_closed_by_a_reload_ends_a_commands_poll_at_once_and_is_no_meters_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A read-now holding the scheduler a reload closed: before, 3 attempts with backoff between, a
    warning "failed after 3 attempts, the last: tcp-1: bus closed" and a failed poll in the meter's
    health; now one attempt, no warning, nothing told to the health, and the reply says why."""
    bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", 1, (MeterConfig("WM-1", 5),), retries=2, retry_backoff_s=0.5)
    polls: list[str | None] = []
    scheduler = Counting(
        bus, Wired(), on_reading=lambda r: asyncio.sleep(0), on_poll=lambda m, reading, error: polls.append(error)
    )

    async def scenario() -> Polled:
        await scheduler.close()
        return await scheduler.read_now("WM-1")

    with caplog.at_level(logging.DEBUG, logger="gateway.scheduler"):
        reading, why, attempts = asyncio.run(scenario())
    assert reading is None and why == "tcp-1: bus closed"
    assert attempts == 0  # the bus asked nothing: the read-now's reply says no attempt was made
    assert scheduler.made == 1  # before: 3
    assert polls == []  # before: ["tcp-1: bus closed"], a failure in the meter's health
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records


_PLACES = st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 2)) | st.none()  # (bus, unit), or not configured
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["fails", "fails", "answers"]), st.sampled_from(["M1", "M2"])),
        st.tuples(st.just("reload"), st.fixed_dictionaries({m: _PLACES for m in ("M1", "M2")})),
    ),
    max_size=40,
)


@settings(max_examples=500)  # a unit changed between two failures is one run in a few dozen
@given(_STEPS)
def test_an_episode_lasts_while_its_meter_stays_on_its_bus_and_a_change_has_its_next_failure_said(
    steps: list[tuple[str, Any]],
) -> None:
    """Any run of reloads (each meter on bus a or b at unit 1 or 2, or not configured), failures and
    answers of configured meters, with no time passing: a failure begins an episode, said whole,
    exactly when none went on since the meter was last configured anew on its bus; a failure in an
    episode is said (a reminder) exactly when it is the first since the meter's unit changed."""
    memory = PolledEpisodes(monotonic=lambda: 0.0)
    places: dict[str, tuple[str, int]] = {}
    going_on: set[tuple[str, str]] = set()
    changed: set[tuple[str, str]] = set()
    for step, what in steps:
        if step == "reload":
            now = {meter: place for meter, place in what.items() if place is not None}
            entries = {name: tuple(MeterConfig(m, u) for m, (b, u) in now.items() if b == name) for name in "ab"}
            memory.configured(ModbusTcpBusConfig(name, "127.0.0.1", 1, meters) for name, meters in entries.items())
            going_on = {(b, m) for b, m in going_on if now.get(m, ("", 0))[0] == b}
            changed = {(b, m) for b, m in going_on if now[m] != places[m]} | (changed & going_on)
            places = now
            continue
        if what not in places:
            continue
        key = (places[what][0], what)
        episodes = memory.of_bus(key[0])
        if step == "answers":
            ended = episodes.ended(what)
            assert (ended is not None) == (key in going_on)
            going_on.discard(key)
            changed.discard(key)
            continue
        said = episodes.failed(what)
        if key not in going_on:
            assert said is not None and said.first
            going_on.add(key)
        elif key in changed:
            assert said is not None and not said.first
            changed.discard(key)
        else:
            assert said is None
