"""One bus's poll schedule: each meter on its own interval, one transaction at a time on the bus.

Each meter's polls sit on the UTC interval grid: once per interval, at a fixed place up to
``jitter × interval`` before each multiple of the interval since the epoch (the place drawn once per
meter), so meters spread out, never drift, and a meter's reads land on the same side of the same
boundary every time. The collector's detection takes each read as the register at the first grid
instant at or after it (give or take a twentieth of the interval): polls moved by a fresh random
jitter each time (as they were) fell half before and half after a boundary when the gateway's start
put the grid near one, and a quarter of the hours came out as gaps. The first poll comes soon after
start (within the jitter's span), not at the first slot. Slots are wall-clock times, waited for on
the monotonic clock and re-read at each poll: a step of the wall clock (NTP at boot) neither stops
nor doubles polling.

The bus takes the meter due soonest; a failed attempt is retried up to ``retries`` times after a
backoff, and the bus is free for other meters' polls while it waits (each poll is its own task; the
bus lock serialises transactions, first come first served). A meter whose previous poll is still
under way when the next falls due skips that one (counted as ``polls_skipped``) rather than queueing
up: a slow or silent meter costs the bus its timeouts, never a backlog.

A poll is done when its reading is in the spool (``on_reading``). A reading the spool refused (a full
disk) is a failed poll like any other, its reason "spool: ..." in the meter's health: before, the
poll's task died with the error, never retrieved, and the meter's health never moved.

A meter's failed polls are said once per episode (gateway.episodes): the first with its reason, a
reminder every hour while it goes on (how many polls failed since when, the last reason), and its
answering again at INFO (after how long, how many polls failed), once it has answered for
``settle_s`` (90 s, :data:`aquami.outage.SETTLE_S`: at its next answer after that; a failure before
it goes on with the episode, and the end says how often it answered between failures). Before, each failed poll was a
warning: a dead Modbus TCP bus of 3 meters polled every 5 s wrote 2,160 lines an hour. The health
status (``on_poll``, ``on_attempt``) still counts every poll and attempt. The episodes are the
gateway's (``failing``, :mod:`gateway.poll_episodes`): they go on across the schedulers a reload makes
anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from aquami.contracts.reads import Reading, utc_iso
from aquami.counted import counted
from aquami.durations import lasted
from aquami.outage import SETTLE_S
from gateway.backoff import pause
from gateway.buses import attempt_once
from gateway.config import BusConfig, MeterConfig
from gateway.episodes import REMIND_EVERY_S, Episodes
from gateway.spool import NotSpooled
from gateway.transport import PollError, PollRefused, Transport

log = logging.getLogger(__name__)

OnReading = Callable[[Reading], Awaitable[None]]
OnPoll = Callable[[MeterConfig, Reading | None, str | None], None]  # the reading, or why the poll failed
OnAttempt = Callable[[bool], None]


@dataclass(slots=True)
class _Due:
    slot: float | None  # the UTC slot (epoch seconds) this poll stands for; None: the first poll
    meter: MeterConfig


class BusClosed(PollError):
    """The scheduler's bus is closed (stopped, or replaced by a reload): no meter failed, and asking
    again gives the same answer. Before, a command still holding a closed scheduler (a read-now
    during a reload) retried it with backoff, seconds spent waiting for nothing, and the meter was
    warned of, "failed after 3 attempts, the last: bus closed", and counted as failing."""

    #: the attempts its poll made on the bus before it found it closed
    attempts = 0


class Polled(NamedTuple):
    """A poll's outcome: its reading, or None and why (its last attempt's error), and the attempts it
    made on the bus: ``retries`` + 1 when each failed, fewer when one was answered, refused (a
    :class:`PollRefused` is not retried) or found the bus closed (0 when the first did). Before, a
    read-now's reply said ``no reading after 3 attempts`` for a refused answer asked once."""

    reading: Reading | None
    why: str | None
    attempts: int


def next_slot(after: float, interval: float, lead: float) -> float:
    """The first slot (``k × interval - lead``, epoch seconds) strictly after ``after``."""
    return (math.floor((after + lead) / interval) + 1) * interval - lead


class BusScheduler:
    def __init__(
        self,
        config: BusConfig,
        transport: Transport,
        *,
        on_reading: OnReading,
        on_poll: OnPoll | None = None,
        on_attempt: OnAttempt | None = None,
        may_poll: Callable[[], bool] = lambda: True,
        on_skip: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
        remind_every_s: float = REMIND_EVERY_S,
        settle_s: float = SETTLE_S,
        failing: Episodes[str] | None = None,
    ):
        self.config = config
        self.transport = transport
        self.on_reading = on_reading
        self.on_poll = on_poll
        self.on_attempt = on_attempt
        self.may_poll = may_poll
        self.on_skip = on_skip
        self.rng = rng or random.Random()
        self.wall_clock = wall_clock
        self._leads: dict[str, float] = {}  # each meter's place before the grid's boundaries (s)
        self.lock = asyncio.Lock()  # the bus: one transaction at a time
        self.closed = False  # closed (stopped, or replaced by a reload): no more transactions
        self.meters = {m.meter_id: m for m in config.meters}
        self._counter = itertools.count()
        # meters whose polls fail, said once an episode; back once answering settle_s (gateway.episodes);
        # the gateway's ``failing`` goes on from the scheduler a reload replaced (gateway.poll_episodes)
        self._failing: Episodes[str] = failing if failing is not None else Episodes()
        self._failing.remind_every_s = remind_every_s
        self._failing.settle_s = settle_s

    def interval(self, meter: MeterConfig) -> float:
        return meter.poll_interval_s or self.config.poll_interval_s

    def _following(self, due: _Due, at: float, now: float, interval: float) -> tuple[float, int]:
        """The slot after ``due`` (which fell due at ``at`` and is taken at ``now``, on the monotonic
        clock) and how many slots were passed over: none, unless the bus is more than a whole
        interval behind. After the first poll, or a step of the wall clock (NTP setting a clock that
        booted in 1970, either way), the next slot is the first one at least half an interval after
        the wall clock's now."""
        wall = self.wall_clock()
        lead = self._leads[due.meter.meter_id]
        late = now - at
        passed = max(0, math.ceil((late - interval) / interval))
        # a poll was just made: the next is the first slot at least half an interval on (the first
        # slot after now came a hundredth of a second later for a first poll made just before it)
        if due.slot is None:
            return next_slot(wall + interval / 2, interval, lead), 0
        if abs(wall - due.slot - late) > interval / 2:  # the wall clock moved by more than time passed
            return next_slot(wall + interval / 2, interval, lead), passed
        return due.slot + (passed + 1) * interval, passed

    async def attempt(self, meter: MeterConfig) -> Reading:
        """One transaction with the bus to itself; failures reset the transport."""
        async with self.lock:
            if self.closed:  # a command still holding this scheduler after a reload: the line is another's
                raise BusClosed(f"{self.config.name}: bus closed")
            try:
                reading = await attempt_once(self.transport, self.config, meter)
            except Exception as error:
                if self.on_attempt:
                    self.on_attempt(False)
                if isinstance(error, PollError):
                    raise
                # a bug, not the bus: a failed attempt all the same, seen in the health's last_error
                # (it killed the poll's task unretrieved: no reading, no error, attempts 0)
                log.exception("%s on %s: unexpected error", meter.meter_id, self.config.name)
                raise PollError(f"{meter.meter_id}: unexpected {type(error).__name__}: {error}") from error
        if self.on_attempt:
            self.on_attempt(True)
        return reading

    async def close(self) -> None:
        """No more transactions: cut short a search under way, wait for the transaction under way (a
        command's), then close the transport."""
        self.closed = True
        self.transport.interrupt()
        async with self.lock:
            await self.transport.close()

    async def poll(self, meter: MeterConfig) -> Reading | None:
        """One poll: the first attempt and up to ``retries`` more, with growing backoff between (none
        after a :class:`PollRefused`, an answer no retry mends)."""
        try:
            return (await self._poll(meter)).reading
        except BusClosed:
            return None

    async def _poll(self, meter: MeterConfig) -> Polled:
        """The reading, or None and the last attempt's error (logged with the poll's warning), and
        the attempts made; :class:`BusClosed`, at once, when the bus closed (not the meter's failure:
        not retried), with the attempts made before."""
        last, made = "", 0
        for attempt in range(self.config.retries + 1):
            try:
                reading = await self.attempt(meter)
            except BusClosed as closed:  # this attempt asked nothing: those before it were made
                closed.attempts = made
                raise
            except PollRefused as error:  # the same answer however often asked: the next poll asks again
                made = attempt + 1
                last = str(error)
                log.debug("%s attempt %d refused, not retried: %s", meter.meter_id, made, error)
                break
            except PollError as error:
                made = attempt + 1
                last = str(error)
                log.debug("%s attempt %d failed: %s", meter.meter_id, made, error)
                if attempt < self.config.retries:
                    await asyncio.sleep(self.config.retry_backoff_s * 2**attempt * self.rng.uniform(0.5, 1.0))
            else:
                self._say_answered(meter)
                return Polled(reading, None, attempt + 1)
        self._say_failed(meter, last, made)
        return Polled(None, last, made)

    def _say_failed(self, meter: MeterConfig, last: str, attempts: int) -> None:
        """A failed poll: said whole if it begins an episode, as a reminder if one is due, else not."""
        episode = self._failing.failed(meter.meter_id)
        if episode is None:
            return
        if episode.first:
            settle = self._failing.settle_s
            log.warning(
                "%s on %s: failed after %s, the last: %s (said again every %s while it fails, and "
                "once it answers%s)",
                meter.meter_id, self.config.name, counted(attempts, "attempt"), last,
                lasted(self._failing.remind_every_s),
                f" for {settle:g} s" if settle else "",
            )  # fmt: skip
        else:
            log.warning(
                "%s on %s: still failing, %s polls failed since %s, the last: %s",
                meter.meter_id, self.config.name, f"{episode.failures:,}", utc_iso(episode.since), last,
            )  # fmt: skip

    def _say_answered(self, meter: MeterConfig) -> None:
        """A poll answered: the end of the meter's episode of failures, if it had one."""
        ended = self._failing.ended(meter.meter_id)
        if ended is not None:
            episode, seconds = ended
            between = episode.answered_between
            log.info(
                "%s on %s: answers again after %s, %s polls failed%s",
                meter.meter_id, self.config.name, lasted(seconds), f"{episode.failures:,}",
                f", answering {between:,} times between them" if between else "",
            )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        heap: list[tuple[float, int, _Due]] = []
        for meter in self.config.meters:
            spread = self.config.jitter * self.interval(meter)
            self._leads[meter.meter_id] = self.rng.uniform(0, spread)
            first = start + self.rng.uniform(0, spread)
            heapq.heappush(heap, (first, next(self._counter), _Due(None, meter)))
        running: dict[str, asyncio.Task[None]] = {}
        try:
            await self._schedule(heap, running, stop)
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    async def _schedule(
        self, heap: list[tuple[float, int, _Due]], running: dict[str, asyncio.Task[None]], stop: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        while heap and not stop.is_set():
            at, _, due = heap[0]
            wait = at - loop.time()
            if wait > 0:
                await pause(stop, wait)
                continue
            heapq.heappop(heap)
            meter = due.meter
            previous = running.get(meter.meter_id)
            if previous is not None and previous.done():
                del running[meter.meter_id]
                previous = None
            if previous is None and self.may_poll():
                running[meter.meter_id] = asyncio.create_task(self._scheduled_poll(meter))
            elif self.on_skip:
                self.on_skip()
            slot, passed = self._following(due, at, loop.time(), self.interval(meter))
            for _ in range(passed):
                if self.on_skip:
                    self.on_skip()
            nxt = loop.time() + slot - self.wall_clock()
            heapq.heappush(heap, (nxt, next(self._counter), _Due(slot, meter)))

    async def _scheduled_poll(self, meter: MeterConfig) -> None:
        """A poll on the schedule: a reading not spooled is a failure reported (and the spool's
        writer logged why), nothing left for the task to raise with no one to hear it."""
        with contextlib.suppress(NotSpooled):
            await self._poll_and_report(meter)

    async def _poll_and_report(self, meter: MeterConfig) -> Polled:
        """One poll, its reading spooled, and its outcome to ``on_poll``: the reading, or None and the
        last attempt's error, and the attempts made; :class:`NotSpooled` when the spool refused the
        reading. A bus closed (by a reload, while a command held this scheduler) is None and why, not
        told to ``on_poll``: the meter did not fail, its new bus polls it."""
        try:
            polled = await self._poll(meter)
        except BusClosed as closed:
            return Polled(None, str(closed), closed.attempts)
        reading, error, _ = polled
        if reading is not None:
            try:
                await self.on_reading(reading)
            except Exception as refused:  # a full disk: the meter answered, but nothing will be delivered
                if self.on_poll:
                    self.on_poll(meter, None, f"spool: {refused}")
                raise NotSpooled(f"{meter.meter_id}: read, but not spooled: {refused}") from refused
        if self.on_poll:
            self.on_poll(meter, reading, error)
        return polled

    async def read_now(self, meter_id: str) -> Polled:
        """Poll one meter now, outside its schedule (``cmd/read-now``); the reading is spooled too.
        The reading, or None and the last attempt's error (why: a bus that will not open says so),
        and the attempts made (the reply says how many)."""
        meter = self.meters.get(meter_id)
        if meter is None:
            raise KeyError(meter_id)
        return await self._poll_and_report(meter)
