"""A meter's failed polls are said once per episode: the first with its reason, then a reminder every
``remind_every_s`` (an hour in service), and its answering again once, with how many polls failed.

Before, each failed poll was a warning: a dead Modbus TCP bus of 3 meters polled every 5 s wrote 36
lines a minute into a field box's log, for as long as it stayed dead. The health status still counts
every poll (``on_poll``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.reads import Reading
from aquami.durations import lasted
from aquami.ports import free_port
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.episodes import Episodes
from gateway.modbus_transport import ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import meters

DEAD_S = 2.0  # how long the bus stays dead
REMIND_S = 0.8  # the reminders' interval in this test (an hour in service)


def test_a_dead_bus_is_said_once_per_meter_then_reminded_then_its_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there: the bus is dead until the simulator starts
    simulated = meters(3)
    bus = ModbusTcpBusConfig(
        "tcp-1",
        "127.0.0.1",
        port,
        tuple(MeterConfig(m.meter_id, m.unit_id) for m in simulated),
        poll_interval_s=0.05,
        timeout_s=0.2,
        retries=0,
        jitter=0.0,
    )
    failed: Counter[str] = Counter()  # each meter's failed polls, as the health status counts them
    failed_when_answered: dict[str, int] = {}
    dead: list[float] = []  # how long the bus was dead, as measured (a loaded machine starts late)

    def on_poll(meter: MeterConfig, reading: Reading | None, error: str | None) -> None:
        if reading is None:
            failed[meter.meter_id] += 1
        else:
            failed_when_answered.setdefault(meter.meter_id, failed[meter.meter_id])

    async def taken(reading: Reading) -> None:
        pass

    async def scenario() -> None:
        scheduler = BusScheduler(
            bus,
            ModbusTcpTransport(bus, ProfileBook()),
            on_reading=taken,
            on_poll=on_poll,
            remind_every_s=REMIND_S,
            settle_s=0.0,  # said back at its first answer (the settle time: its own tests below)
        )
        stop = asyncio.Event()
        running = asyncio.create_task(scheduler.run(stop))
        began = time.monotonic()
        await asyncio.sleep(DEAD_S)
        simulator = ModbusTcpSimulator(simulated, port=port)
        await simulator.start()
        dead.append(time.monotonic() - began)
        try:
            for _ in range(200):  # until each meter answered
                if len(failed_when_answered) == len(simulated):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running
            await scheduler.close()
            await simulator.stop()

    with caplog.at_level(logging.INFO, logger="gateway.scheduler"):
        asyncio.run(asyncio.wait_for(scenario(), 60))

    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.scheduler"]
    for meter in simulated:
        mine = [(level, text) for level, text in said if text.startswith(f"{meter.meter_id} on tcp-1: ")]
        polls = failed_when_answered[meter.meter_id]
        assert polls >= 10, (polls, mine)  # every 50 ms for 2 s: tens of polls failed, each counted
        first, *reminders, answered = mine
        assert first[0] == logging.WARNING and "failed after 1 attempt, the last: " in first[1], first
        assert first[1].endswith("(said again every 1 s while it fails, and once it answers)"), first
        # before: one warning per failed poll (tens); now: the first, and one reminder per interval
        assert len(reminders) <= dead[0] / REMIND_S + 1, mine
        assert reminders, mine  # the bus stayed dead longer than the reminders' interval
        for level, text in reminders:
            assert level == logging.WARNING and re.search(r"still failing, \d+ polls failed since 20\d\d-", text), text
        assert answered[0] == logging.INFO, answered
        recovered = rf"{meter.meter_id} on tcp-1: answers again after \d+ s, {polls} polls failed"
        assert re.fullmatch(recovered, answered[1]), answered


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 10_000)), max_size=60))
def test_episodes_say_each_first_failure_each_due_reminder_and_count_every_failure(
    events: list[tuple[bool, float]],
) -> None:
    """Any run of failures (True) and successes (False), each ``step`` seconds after the last: the
    first failure after a success is said, a reminder only once ``remind_every_s`` passed since the
    last said, and an episode's end counts every failure it had."""
    now = [0.0]
    episodes: Episodes[str] = Episodes(remind_every_s=3600.0, monotonic=lambda: now[0])
    failures = 0
    said_at: float | None = None
    for failure, step in events:
        now[0] += step
        if failure:
            failures += 1
            episode = episodes.failed("WM-1")
            due = said_at is None or now[0] - said_at >= 3600.0
            assert (episode is not None) == due
            assert episode is None or (episode.failures == failures and episode.first == (said_at is None))
            if due:
                said_at = now[0]
        else:
            ended = episodes.ended("WM-1")
            assert (ended is None) == (failures == 0)
            if ended is not None:
                assert ended[0].failures == failures
            failures, said_at = 0, None


SETTLE_S = 3.0  # the settle time of these tests (90 s in service)


def test_a_meter_answering_now_and_then_is_one_episode_said_back_once_it_has_answered_settle_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Half its answers lost (seeded): while it answers one poll here and there, its failures are one
    episode, one warning; once every answer comes, it is said back at its first answer ``settle_s``
    after it came back, with how often it answered between failures. Before, each failure after an
    answer began a new episode: a warning and an "answers again" line for each."""
    lossy = WireFaultPlan([WireFault(WireFaultKind.NO_REPLY, probability=0.5)], seed=3)
    outcomes: list[bool] = []

    async def taken(reading: Reading) -> None:
        pass

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(1))
        await simulator.start()
        proxy = ModbusTcpFaultProxy("127.0.0.1", simulator.port, lossy)
        await proxy.start()
        bus = ModbusTcpBusConfig(
            "tcp-1", "127.0.0.1", proxy.port, (MeterConfig("WM-0001", 1),), timeout_s=0.2, retries=0
        )
        scheduler = BusScheduler(bus, ModbusTcpTransport(bus, ProfileBook()), on_reading=taken, settle_s=SETTLE_S)
        try:
            for _ in range(16):  # flapping: never answering SETTLE_S on end (a failure takes 0.2 s)
                outcomes.append(await scheduler.poll(bus.meters[0]) is not None)
            lossy.faults.clear()  # every answer comes from now on
            deadline = time.monotonic() + 3 * SETTLE_S
            while time.monotonic() < deadline and not any("answers again" in r.getMessage() for r in caplog.records):
                await scheduler.poll(bus.meters[0])
                await asyncio.sleep(0.25)
        finally:
            await scheduler.close()
            await proxy.stop()
            await simulator.stop()

    with caplog.at_level(logging.INFO, logger="gateway.scheduler"):
        asyncio.run(asyncio.wait_for(scenario(), 60))
    runs = "".join("F" if not ok else "A" for ok in outcomes).lstrip("A")  # from its first failure
    failure_runs = len([run for run in runs.split("A") if run])
    assert failure_runs >= 3, outcomes  # the seed makes it flap: answers between failures
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.scheduler"]
    assert [level for level, _ in said] == [logging.WARNING, logging.INFO], said  # before: a pair a run
    assert said[0][1].endswith(f"(said again every 1 h while it fails, and once it answers for {SETTLE_S:g} s)")
    back = rf"WM-0001 on tcp-1: answers again after \d+ s, {outcomes.count(False)} polls failed, "
    assert re.fullmatch(back + f"answering {failure_runs - 1} times between them", said[1][1]), said


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 200)), max_size=60))
def test_an_episode_ends_only_once_it_has_answered_settle_s(events: list[tuple[bool, float]]) -> None:
    """Any run of failures (True) and answers (False), each ``step`` seconds after the last, with a
    90 s settle time: an episode begins only at a failure with none going on; an answer ends it only
    if it comes 90 s or more after the first answer since its last failure; its end counts every
    failure it had, the answers between them, and lasted until that first answer."""
    now = [0.0]
    episodes: Episodes[str] = Episodes(remind_every_s=1e9, monotonic=lambda: now[0], settle_s=90.0)
    going_on = False
    began = 0.0
    back: float | None = None  # the first answer since the last failure, in an episode
    failures = between = 0
    for failure, step in events:
        now[0] += step
        if failure:
            episode = episodes.failed("WM-1")
            assert (episode is not None and episode.first) == (not going_on)
            if not going_on:
                going_on, began, failures, between = True, now[0], 0, 0
            elif back is not None:
                between += 1
            failures, back = failures + 1, None
        else:
            ended = episodes.ended("WM-1")
            if going_on and back is None:
                back = now[0]
            settled = going_on and back is not None and now[0] - back >= 90.0
            assert (ended is not None) == settled
            if ended is not None and back is not None:
                episode, seconds = ended
                assert (episode.failures, episode.answered_between) == (failures, between)
                assert seconds == back - began
                going_on, back = False, None


def test_durations_read_as_an_operator_says_them() -> None:
    assert [lasted(s) for s in (0.4, 45, 60, 754, 3600, 7980, 86_400, 97_200)] == [
        "0 s",
        "45 s",
        "1 min",
        "12 min",
        "1 h",
        "2 h 13 min",
        "1 d",
        "1 d 3 h",
    ]
