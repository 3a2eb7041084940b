"""Small pieces of the gateway: the batch encoder, the backoff, the scheduler's grid and jitter."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.reads import Reading, schema_errors
from collector.batch_parser import ParsedMessage, parse_reads_message
from firmware_protocols.modbus import load_profile
from gateway.backoff import Backoff
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.modbus_read import to_reading
from gateway.modbus_transport import ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.publisher import encode_batch
from gateway.scheduler import BusScheduler
from gateway.transport import PollError

reading_st = st.fixed_dictionaries(
    {
        "meter_id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True),
        "ts": st.just("2026-01-01T00:00:00.123Z"),
        "volume_m3": st.floats(min_value=0, max_value=1e9, allow_nan=False),
    }
)


@given(st.lists(reading_st, min_size=1, max_size=20), st.integers(min_value=0, max_value=2**53))
def test_spliced_batch_is_the_contract_message(readings: list[dict[str, object]], seq: int) -> None:
    bodies = [json.dumps(r, separators=(",", ":")) for r in readings]
    message = json.loads(encode_batch("gw-1", seq, bodies))
    assert schema_errors(message) == []
    assert (message["gateway_id"], message["batch_seq"], message["readings"]) == ("gw-1", seq, readings)


def test_backoff_doubles_within_jitter_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    waits = [backoff.next() for _ in range(7)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len({round(w, 6) for w in waits[3:]}) == 4  # jittered, not all the same
    backoff.reset()
    assert backoff.next() <= 0.5


def _batch_of(*readings: Reading) -> dict[str, object]:
    """The ``reads`` message these readings travel in, made by the gateway's own code."""
    bodies = [json.dumps(r.to_json(), separators=(",", ":")) for r in readings]
    message: dict[str, object] = json.loads(encode_batch("gw-1", 1, bodies))
    return message


@pytest.mark.parametrize(
    ("profile_name", "registers", "field"),
    [
        # 0x7FFFFFFF, many meters' "no value" in a signed 32-bit register: 2,147,483.647 m3/h
        ("smart_water_meter", "0001e240 7fffffff 0000 00000000 0050 02628a39", "flow_m3h"),
        # an IEEE 754 infinity in a float register (word-swapped, as the profile says)
        ("electromagnetic_flow_meter", "0000 7f80 e240 0001 0000 0000 0000 0000 0000 0000 0000 aa0b 0319", "flow_m3h"),
        # a 64-bit totaliser gone to all ones: 1.8e16 m3
        (
            "electromagnetic_flow_meter",
            "0000 4120 e240 0001 0000 0000 ffff ffff ffff ffff 0000 aa0b 0319",
            "reverse_volume_m3",
        ),
    ],
)
def test_a_value_outside_the_contract_does_not_spoil_the_batch(profile_name: str, registers: str, field: str) -> None:
    """The collector refuses a whole message for one value outside the contract, every other
    meter's reading in it with it: the gateway leaves out an optional value it cannot send."""
    profile = load_profile(profile_name)
    data = bytes.fromhex(registers.replace(" ", ""))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    odd = to_reading(MeterConfig("WM-1", 1, profile_name), profile, words, at, "modbus-tcp", "b")
    good = Reading("WM-2", at, 12.5, flow_m3h=0.25, bus="b", address=2)
    message = _batch_of(odd, good)
    assert schema_errors(message) == []
    payload = encode_batch("gw-1", 1, [json.dumps(r.to_json()) for r in (odd, good)])
    assert isinstance(parse_reads_message("aquami/v1/gw-1/reads", payload), ParsedMessage)  # not a dead letter
    assert odd.volume_m3 == 123.456 and getattr(odd, field) is None


def test_a_volume_outside_the_contract_is_a_failed_poll() -> None:
    profile = load_profile("electromagnetic_flow_meter")
    data = bytes.fromhex("0000 4120 ffff ffff ffff ffff 0000 0000 0000 0000 0000 aa0b 0319".replace(" ", ""))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    meter = MeterConfig("WM-1", 1, "electromagnetic_flow_meter")
    with pytest.raises(PollError, match="outside the reads contract"):
        to_reading(meter, profile, words, datetime(2026, 1, 1, tzinfo=UTC), "modbus-tcp", "b")


def test_an_answer_with_another_function_code_is_no_reading() -> None:
    """A device (or a gateway in front of several) answering a read of input registers (04h) with a
    holding-register answer (03h) had it taken for the meter's register."""
    import struct

    from gateway.buses import attempt_once, make_transport
    from gateway.config import parse_config_text
    from gateway.transport import PollError
    from tests.gateway.helpers import config_text

    async def scenario() -> str:
        async def answer_with_03(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                    await reader.readexactly(length - 1)
                    writer.write(struct.pack(">HHHBBB", tid, 0, 3 + 16, unit, 0x03, 16) + bytes(16))
                    await writer.drain()
            except asyncio.IncompleteReadError:
                pass

        server = await asyncio.start_server(answer_with_03, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = parse_config_text(
            config_text("mqtt://127.0.0.1:1", {"b": port}, {"b": [1]}, "s.sqlite", timeout_s=0.5)
        )
        transport = make_transport(config.buses[0], ProfileBook())
        try:
            with pytest.raises(PollError) as refused:
                await attempt_once(transport, config.buses[0], config.meters[0])
            return str(refused.value)
        finally:
            await transport.close()
            server.close()

    assert "asked with function 04h, answered 03h" in asyncio.run(scenario())


class _TimedScheduler(BusScheduler):
    """The schedule alone: each poll's one attempt records the wall-clock time it was made, and
    reads nothing (no retries)."""

    def __init__(self, config: ModbusTcpBusConfig, wall_clock: Callable[[], float]) -> None:
        super().__init__(
            config,
            ModbusTcpTransport(config, ProfileBook()),
            on_reading=_ignore,
            on_skip=self._count_skip,
            wall_clock=wall_clock,
            rng=random.Random(7),
        )
        self.polled: dict[str, list[float]] = {m.meter_id: [] for m in config.meters}
        self.aimed: dict[str, list[float]] = {m.meter_id: [] for m in config.meters}  # the slots it chose
        #: how late after its due time on the event loop's clock each poll's attempt began: the
        #: loop's own lateness (a loaded machine's), not the schedule's
        self.loop_late: dict[str, list[float]] = {m.meter_id: [] for m in config.meters}
        self._due_at: dict[str, float] = {}
        self.skipped = 0
        self.ran_s = 0.0  # how long it ran, start to stop, on a loaded machine more than asked

    def late_skips(self, meter_id: str) -> int:
        """The slots of ``meter_id`` the loop's own lateness passed over (the scheduler skips the slots
        a poll taken more than an interval late has missed): at most, as a poll's attempt begins a
        little after the scheduler took it."""
        interval = self.config.poll_interval_s
        return sum(max(0, math.ceil((late - interval) / interval)) for late in self.loop_late[meter_id])

    def _following(self, due: Any, at: float, now: float, interval: float) -> tuple[float, int]:
        self._due_at[due.meter.meter_id] = at  # the poll just started for it was due then
        slot, passed = super()._following(due, at, now, interval)
        self.aimed[due.meter.meter_id].append(slot)
        return slot, passed

    def _count_skip(self) -> None:
        self.skipped += 1

    async def attempt(self, meter: MeterConfig) -> Reading:
        self.loop_late[meter.meter_id].append(asyncio.get_running_loop().time() - self._due_at[meter.meter_id])
        self.polled[meter.meter_id].append(self.wall_clock())
        raise PollError("the schedule alone: nothing is read")


async def _ignore(reading: Reading) -> None:
    raise AssertionError("nothing is read")


def _run_schedule(interval_s: float, jitter: float, seconds: float, wall_clock: Callable[[], float]) -> _TimedScheduler:
    meters = tuple(MeterConfig(f"M{i}", unit_id=i + 1) for i in range(4))
    config = ModbusTcpBusConfig("b", "127.0.0.1", 1, meters, poll_interval_s=interval_s, jitter=jitter, retries=0)
    scheduler = _TimedScheduler(config, wall_clock)

    async def main() -> None:
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(scheduler.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        scheduler.ran_s = time.monotonic() - started
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    return scheduler


@pytest.mark.timeout(30)
def test_each_meters_polls_land_at_one_place_before_the_grids_boundaries() -> None:
    """The collector's detection takes a read as the register at the first grid instant at or after
    it. Polls moved by a fresh jitter each time fell on both sides of a boundary when the gateway's
    start put its grid near one: two reads in one interval, none in the next."""
    interval, jitter = 0.4, 0.3
    scheduler = _run_schedule(interval, jitter, 4.5, time.time)
    polled = scheduler.polled
    for meter_id, times in polled.items():
        on_grid = times[1:]  # the first poll comes soon after start, wherever the grid is
        assert len(on_grid) >= 8, (meter_id, times)
        # the slots it aimed at sit at one place before the boundaries, the meter's lead, every time
        places = [(-slot) % interval for slot in scheduler.aimed[meter_id]]
        assert max(places) - min(places) < 1e-4, (meter_id, places)  # (0.4 s steps on epoch floats: ulps)
        lead = places[0]
        assert 0 <= lead <= jitter * interval
        # how late each poll came after its place (one-sided: a loaded machine wakes late, never
        # early); measured from the place, not as the spread of places, which a meter placed a few
        # milliseconds before the boundary crossed under load (11 of 16 runs with two CPU burners);
        # less the event loop's own lateness for that poll (one 0.166 s late against 0.15 s, 1 run
        # in 8 under load): what is left is the schedule's, where it put the poll's wake-up
        loop_late = scheduler.loop_late[meter_id][1:]
        on_time = [t - d for t, d in zip(on_grid, loop_late, strict=True)]  # had the loop woken on time
        # (signed: the clocks read apart, the loop's then the wall's, may put it a hair early)
        late = [(t + lead + interval / 2) % interval - interval / 2 for t in on_time]
        assert all(-0.01 < x < 0.15 for x in late), (meter_id, lead, late, loop_late)
        slots = [round((t + lead - x) / interval) for t, x in zip(on_time, late, strict=True)]
        assert all(b > a for a, b in itertools.pairwise(slots)), (meter_id, slots)  # never two in one interval
    leads = {round(statistics.median((-t) % interval for t in times[1:]), 2) for times in polled.values()}
    assert len(leads) > 1  # the meters spread over the jitter's span


@pytest.mark.timeout(30)
def test_a_wall_clock_step_neither_stops_nor_doubles_polling() -> None:
    """NTP at boot steps the wall clock, by 56 years forward on a gateway that booted in 1970, or
    back: polls go on once per interval, and the slots stepped over are not counted as skipped (a
    first cut walked them one by one: 150 million skips and the event loop frozen for 37 s)."""
    started = time.monotonic()

    def wall() -> float:
        elapsed = time.monotonic() - started
        if elapsed < 1.0:
            return 1_000_000 + elapsed  # January 1970
        return 1_800_000_000 + elapsed - (3600.0 if elapsed < 2.5 else 0.0)  # 2027, then an hour back

    scheduler = _run_schedule(0.25, 0.0, 4.0, wall)
    # once per 0.25 s (16 in 4 s), give or take the slot each step lands on: less the slots a loaded
    # machine's late loop passed over, and no more than the time it ran holds (the bugs: no polls, or
    # twice as many, or millions of skips)
    for meter_id, times in scheduler.polled.items():
        lower, upper = 14 - scheduler.late_skips(meter_id), scheduler.ran_s / 0.25 + 2
        assert lower <= len(times) <= upper, (meter_id, len(times), scheduler.loop_late[meter_id], scheduler.ran_s)
    assert scheduler.skipped <= 4 + sum(scheduler.late_skips(meter_id) for meter_id in scheduler.polled)


@pytest.mark.timeout(30)
def test_a_gateway_started_just_before_a_boundary_does_not_poll_twice_across_it() -> None:
    """Started 20 ms before a boundary, each meter's first poll (at start) was followed by the first
    slot after it, 20 ms later: two reads for one grid instant. The second poll is at least half an
    interval after the first."""
    started = time.monotonic()
    # 3 s: about 8 polls each, 3 needed (in 1.5 s, a loaded machine's stalled loop could leave 2)
    polled = _run_schedule(0.4, 0.0, 3.0, lambda: 1_800_000_000 - 0.02 + time.monotonic() - started).polled
    for meter_id, times in polled.items():
        assert len(times) >= 3 and times[1] - times[0] > 0.2, (meter_id, times)
