"""One bus's poll schedule: each meter on its own interval, one transaction at a time on the bus.

Each meter's polls sit on a fixed grid (``start + k × interval``) moved by a random jitter of up to
± ``jitter × interval`` each time, so meters spread out and never drift. The bus takes the meter due
soonest; a failed attempt is retried up to ``retries`` times after a backoff, and the bus is free for
other meters' polls while it waits (each poll is its own task; the bus lock serialises transactions,
first come first served). A meter whose previous poll is still under way when the next falls due
skips that one (counted as ``polls_skipped``) rather than queueing up: a slow or silent meter costs
the bus its timeouts, never a backlog.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aquami.contracts.reads import Reading
from gateway.backoff import pause
from gateway.buses import attempt_once
from gateway.config import BusConfig, MeterConfig
from gateway.transport import PollError, Transport

log = logging.getLogger(__name__)

OnReading = Callable[[Reading], Awaitable[None]]
OnPoll = Callable[[MeterConfig, Reading | None], None]
OnAttempt = Callable[[bool], None]


@dataclass(slots=True)
class _Due:
    base: float  # the grid point
    at: float  # the grid point plus this round's jitter
    meter: MeterConfig


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
    ):
        self.config = config
        self.transport = transport
        self.on_reading = on_reading
        self.on_poll = on_poll
        self.on_attempt = on_attempt
        self.may_poll = may_poll
        self.on_skip = on_skip
        self.rng = rng or random.Random()
        self.lock = asyncio.Lock()  # the bus: one transaction at a time
        self.closed = False  # closed (stopped, or replaced by a reload): no more transactions
        self.meters = {m.meter_id: m for m in config.meters}
        self._counter = itertools.count()

    def interval(self, meter: MeterConfig) -> float:
        return meter.poll_interval_s or self.config.poll_interval_s

    def _jitter(self, interval: float) -> float:
        spread = self.config.jitter * interval
        return self.rng.uniform(-spread, spread)

    async def attempt(self, meter: MeterConfig) -> Reading:
        """One transaction with the bus to itself; failures reset the transport."""
        async with self.lock:
            if self.closed:  # a command still holding this scheduler after a reload: the line is another's
                raise PollError(f"{self.config.name}: bus closed")
            try:
                reading = await attempt_once(self.transport, self.config, meter)
            except PollError:
                if self.on_attempt:
                    self.on_attempt(False)
                raise
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
        """One poll: the first attempt and up to ``retries`` more, with growing backoff between."""
        for attempt in range(self.config.retries + 1):
            try:
                return await self.attempt(meter)
            except PollError as error:
                log.debug("%s attempt %d failed: %s", meter.meter_id, attempt + 1, error)
                if attempt < self.config.retries:
                    await asyncio.sleep(self.config.retry_backoff_s * 2**attempt * self.rng.uniform(0.5, 1.0))
        log.warning("%s on %s: no answer after %d attempts", meter.meter_id, self.config.name, self.config.retries + 1)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        heap: list[tuple[float, int, _Due]] = []
        for meter in self.config.meters:
            interval = self.interval(meter)
            first = start + self.rng.uniform(0, self.config.jitter * interval)
            heapq.heappush(heap, (first, next(self._counter), _Due(start, first, meter)))
        running: dict[str, asyncio.Task[Reading | None]] = {}
        try:
            await self._schedule(heap, running, stop)
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    async def _schedule(
        self, heap: list[tuple[float, int, _Due]], running: dict[str, asyncio.Task[Reading | None]], stop: asyncio.Event
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
                running[meter.meter_id] = asyncio.create_task(self._poll_and_report(meter))
            elif self.on_skip:
                self.on_skip()
            interval = self.interval(meter)
            base = due.base + interval
            now = loop.time()
            while base + interval < now:  # behind by more than a whole interval: skip, do not burst
                base += interval
                if self.on_skip:
                    self.on_skip()
            nxt = base + self._jitter(interval)
            heapq.heappush(heap, (nxt, next(self._counter), _Due(base, nxt, meter)))

    async def _poll_and_report(self, meter: MeterConfig) -> Reading | None:
        reading = await self.poll(meter)
        if reading is not None:
            await self.on_reading(reading)
        if self.on_poll:
            self.on_poll(meter, reading)
        return reading

    async def read_now(self, meter_id: str) -> Reading | None:
        """Poll one meter now, outside its schedule (``cmd/read-now``); the reading is spooled too."""
        meter = self.meters.get(meter_id)
        if meter is None:
            raise KeyError(meter_id)
        return await self._poll_and_report(meter)
