"""A live meter: given a UTC time, what its register, flow and alarms read.

The water through the meter is the consumption model at a fine step (60 s by default) plus the
injected faults. Within a step the flow is constant, so the registered volume is the exact integral
of the reported flow: for any ``t1 < t2`` without a replacement or rollover between them,
``register(t2) - register(t1)`` equals ``∫ flow_m3h dt / 3600`` to within one register resolution
(the register shows ``floor(volume / resolution)``, like a counting wheel).

Each UTC day's steps are drawn from their own random stream (seeded by seed, meter id and day), so
any instant can be read in any order and always gives the same answer. Only per-day totals are kept
for the past; a few recent days are kept whole for the alarms.

Faults that change the water through the meter (leak, burst, reverse flow, tamper, stuck, dry) act
on whole steps: :meth:`MeterModel.inject` moves their start up to the next step boundary and keeps
their length, rounded up to whole steps; :meth:`MeterModel.end_fault` ends them at the step boundary
after the instant given. A fault injected or ended now (the rig does both while gateways read)
then never rewrites the step in progress, which a gateway may already have read: the register never
goes back except under reverse flow, and stands still from a stuck fault's start.

Within a step the meter turns one way: its backward register counts only the steps in which more
went back than the household drew (so a reverse flow under the household's use shows there in
part, as in the fleet generator's backward registers).

The meter's own alarms come from its own measurements, as in a real meter, not from the ground
truth: ``leak`` when no step in the last 24 h was without flow (either way), ``burst`` when the mean flow over the
last 30 min exceeds a threshold, ``reverse_flow`` when anything ran backwards in the last 24 h.
``tamper``, ``dry``, ``low_battery`` and ``meter_error`` are the sensors' states.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from simulators import consumption, network
from simulators.consumption import DAY_S, CustomerClass, CustomerMix
from simulators.events import (
    Burst,
    ClockDrift,
    Dry,
    Fault,
    Leak,
    LowBattery,
    MeterError,
    Replacement,
    ReverseFlow,
    Stuck,
    Tamper,
)
from simulators.ground_truth import GroundTruthEvent, iso_utc

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[Concatenate[MeterModel, _P], _R]) -> Callable[Concatenate[MeterModel, _P], _R]:
    """Serialise calls: a wire simulator's thread reads while a test or scenario injects faults."""

    @functools.wraps(method)
    def wrapper(self: MeterModel, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


#: The faults applied step by step (:meth:`MeterModel._day`): they start and end on step boundaries.
_STEPPED = (Leak, Burst, ReverseFlow, Tamper, Stuck, Dry)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The earliest installation the model can simulate: its days are counted from the Unix epoch, and
#: a day before it has no random stream (numpy seeds from non-negative integers only).
EARLIEST_INSTALLED = _EPOCH


def refuse_installed_before_epoch(meter_id: str, installed: datetime) -> None:
    """ValueError naming the meter when ``installed`` is before :data:`EARLIEST_INSTALLED`: refused
    when a model is built, not at its first reading, where numpy refused to seed the day before 1970
    with "expected non-negative integer" and named neither the meter nor the field (an inlet's model
    read as if it had always been in place)."""
    if installed < EARLIEST_INSTALLED:
        raise ValueError(
            f"{meter_id}: installed {iso_utc(installed)}, before {iso_utc(EARLIEST_INSTALLED)},"
            " the earliest the simulated meters start from"
        )


_US = timedelta(microseconds=1)
ALARMS = ("leak", "burst", "tamper", "reverse_flow", "dry", "low_battery", "meter_error")
_EPS = 1e-7  # in register counts, against float error at exact multiples of the resolution


@dataclass(frozen=True)
class MeterReading:
    """What the meter shows at ``ts`` (true UTC); ``meter_time`` is its own, possibly drifting, clock."""

    meter_id: str
    ts: datetime
    meter_time: datetime
    volume_m3: float  # net register, quantized, after rollover
    flow_m3h: float  # the flow the meter measures now (negative when running backwards)
    reverse_volume_m3: float  # cumulative backward volume, quantized
    forward_volume_m3: float  # cumulative forward volume, quantized
    alarms: frozenset[str]
    true_flow_m3h: float  # what really flows (differs from flow_m3h under tamper or a stuck register)

    def fields(self) -> dict[str, Any]:
        """The reading fields of the MQTT contract (what a register map is built from)."""
        return {
            "meter_id": self.meter_id,
            "volume_m3": self.volume_m3,
            "flow_m3h": self.flow_m3h,
            "reverse_volume_m3": self.reverse_volume_m3,
            "forward_volume_m3": self.forward_volume_m3,
            "alarms": sorted(self.alarms),
            "meter_time": self.meter_time,
        }


@dataclass
class _Day:
    fwd: np.ndarray  # registered forward volume per step
    rev: np.ndarray  # registered backward volume per step
    true_net: np.ndarray  # true net volume per step
    cnet: np.ndarray  # (n+1,) cumulative registered net, from 0 at midnight
    crev: np.ndarray  # (n+1,) cumulative registered reverse
    ctrue: np.ndarray  # (n+1,) cumulative true net


@dataclass(frozen=True)
class _Terms:
    """The terms of a day's water other than the customer's use, per step (:meth:`MeterModel._terms`)."""

    leak: np.ndarray  # volume of the leaks
    burst: np.ndarray  # volume of the bursts
    wet: np.ndarray  # share of the step with water in the pipe (not dry)
    live: np.ndarray  # share of the step after the installation
    rev_true: np.ndarray  # true backward volume (reverse flow, while wet and installed)
    counted: np.ndarray  # share of the water the register counts (not stuck, not tampered away)


def _water(use: np.ndarray, terms: _Terms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(registered forward, registered backward, true net) volume per step, of the customer's use
    and the other terms. Only +, -, * and max, each rounded once by IEEE 754 element by element, so an
    element's result depends on its operands alone, whatever the arrays' lengths (unlike cos)."""
    fwd_true = (use + terms.leak + terms.burst) * terms.wet * terms.live
    # within a step the meter turns one way: while the household draws more than goes back,
    # forwards (the backward register stands still), else backwards
    net = (fwd_true - terms.rev_true) * terms.counted
    return np.maximum(net, 0.0), np.maximum(-net, 0.0), fwd_true - terms.rev_true


def _s(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError("naive datetime: times are UTC and timezone-aware")
    return t.timestamp()


def _mix_for(klass: CustomerClass | None) -> CustomerMix:
    if klass is None:
        return CustomerMix()
    return CustomerMix(
        commercial=1.0 if klass == CustomerClass.COMMERCIAL else 0.0,
        irrigation=1.0 if klass == CustomerClass.IRRIGATION else 0.0,
    )


@dataclass(eq=False)
class MeterModel:
    """One customer meter. ``installed`` is when the register read ``initial_m3``."""

    meter_id: str
    installed: datetime
    seed: int = 0
    customer_class: CustomerClass | None = None  # None: drawn like any customer
    initial_m3: float = 0.0
    resolution_m3: float = 0.001
    modulus_m3: float = 100_000.0
    dma: str = ""
    step_s: int = 60
    burst_threshold_m3h: float = 1.5
    burst_window_s: int = 1800
    faults: list[Fault] = field(default_factory=list)
    _days: OrderedDict[int, _Day] = field(default_factory=OrderedDict, init=False, repr=False)
    _at_midnight: dict[int, tuple[float, float, float]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._install_s = _s(self.installed)  # (refuses a naive datetime)
        refuse_installed_before_epoch(self.meter_id, self.installed)
        if consumption.HOUR_S % self.step_s:
            raise ValueError("step_s must divide an hour")
        inv = 1.0 / self.resolution_m3
        if abs(inv - round(inv)) > 1e-9 * inv:
            raise ValueError("resolution_m3 must be 1/n for an integer n")
        self._inv = round(inv)
        self._lock = threading.RLock()
        key = zlib.crc32(self.meter_id.encode())
        self._key = key
        rng = np.random.default_rng([self.seed, key])
        year = int(self._install_s) + 365 * DAY_S
        self.customers = consumption.draw_customers(rng, 1, int(self._install_s), year, _mix_for(self.customer_class))
        self.faults = [self._on_steps(f) for f in self.faults]

    # ---- faults -------------------------------------------------------------------------------

    @_locked
    def inject(self, fault: Fault) -> Fault:
        """Add a fault; readings from then on (and re-reads of the past) include it.

        Returns the fault as the meter applies it: one that changes the water starts (and ends) at
        the next step boundary, so the step in progress keeps the flow it had.
        """
        fault = self._on_steps(fault)
        self.faults.append(fault)
        self._forget_from(fault.start)
        return fault

    @_locked
    def end_fault(self, fault: Fault, at: datetime) -> Fault:
        """End an injected fault at ``at`` (if still going); returns the fault as it now stands.

        The past stays as it was: the water already went through. A fault that changes the water
        ends at the step boundary after ``at``, so the step in progress keeps its flow.
        """
        if fault.end is not None and fault.end <= at:
            return fault
        end = self._next_step(at) if isinstance(fault, _STEPPED) else at
        ended = dataclasses.replace(fault, end=max(end, fault.start))
        self.faults[self.faults.index(fault)] = ended
        assert ended.end is not None
        self._forget_from(ended.end)
        return ended

    def _forget_from(self, t: datetime) -> None:
        """Drop what was worked out for the day of ``t`` and after: a fault changes nothing before its
        start (or an end before its old one), so the days before stay. Dropping them all made the next
        read work out the meter's whole history again (some 0.3 s a year) under the lock, on the
        Modbus TCP simulator's event loop: every meter on its port stopped answering meanwhile."""
        first = math.floor(_s(t) / DAY_S)
        for d in [d for d in self._days if d >= first]:
            del self._days[d]
        for d in [d for d in self._at_midnight if d > first]:  # the total at day d's start has days < d
            del self._at_midnight[d]

    def _next_step(self, t: datetime) -> datetime:
        """The first step boundary at or after ``t`` (in whole microseconds: no float rounding)."""
        step = self.step_s * 1_000_000
        return _EPOCH + -(-((t - _EPOCH) // _US) // step) * step * _US

    def _on_steps(self, fault: Fault) -> Fault:
        """A fault that changes the water from the next step boundary on, as long as it was to last
        (rounded up to whole steps). Moving its end up to a boundary of its own made one shorter
        than a step that began mid-step (30 s from 03:00:20) last no time at all: never on the wire."""
        if not isinstance(fault, _STEPPED):
            return fault
        start = self._next_step(fault.start)
        if fault.end is None:
            return dataclasses.replace(fault, start=start)
        step = self.step_s * 1_000_000
        steps = -(-((fault.end - fault.start) // _US) // step)
        return dataclasses.replace(fault, start=start, end=start + steps * step * _US)

    def _of(self, kind: type[Fault]) -> list[Fault]:
        return [f for f in self.faults if isinstance(f, kind)]

    # ---- the water, day by day ----------------------------------------------------------------

    def _span(self, faults: Iterable[Fault]) -> tuple[np.ndarray, np.ndarray]:
        fs = list(faults)
        start = np.array([_s(f.start) for f in fs], dtype=np.float64)
        end = np.array([math.inf if f.end is None else _s(f.end) for f in fs], dtype=np.float64)
        return start, end

    def _flow(self, kind: type[Fault], steps: np.ndarray) -> np.ndarray:
        """Volume per step of the constant flows of one fault kind, exact at their edges."""
        fs = self._of(kind)
        if not fs:
            return np.zeros(steps.shape)
        start, end = self._span(fs)
        rates = np.array([f.size / 1000.0 for f in fs])
        return network.constant_flow_m3(rates, start, end, steps.astype(np.float64), self.step_s).sum(axis=0)

    def _share(self, kind: type[Fault], steps: np.ndarray) -> np.ndarray:
        """Share of each step during which a fault of this kind is on (overlaps do not add up past 1)."""
        return np.clip(self._shares(kind, steps).sum(axis=0), 0.0, 1.0)

    def _shares(self, kind: type[Fault], steps: np.ndarray) -> np.ndarray:
        """(faults of this kind, steps): the share of each step during which each one is on."""
        fs = self._of(kind)
        if not fs:
            return np.zeros((0, *steps.shape))
        start, end = self._span(fs)
        hours = network.constant_flow_m3(np.ones(len(fs)), start, end, steps.astype(np.float64), self.step_s)
        return np.asarray(hours) * consumption.HOUR_S / self.step_s

    def _terms(self, steps: np.ndarray) -> _Terms:
        """What the faults that change the water, and the installation, make of each of ``steps``."""
        # Steps before installation do not count; the installation step counts from the instant.
        live = np.clip((steps + self.step_s - self._install_s) / self.step_s, 0.0, 1.0)
        wet = 1.0 - self._share(Dry, steps)
        rev_true = self._flow(ReverseFlow, steps) * wet * live
        tampers = self._of(Tamper)
        counted = 1.0 - self._share(Stuck, steps)
        if tampers:
            # each episode loses its own share while it is on: one share for all (the smallest)
            # rewrote an earlier episode's registered flow once a later one was injected, and the
            # register on the wire went back
            lost = np.array([1.0 - f.size for f in tampers])[:, None] * self._shares(Tamper, steps)
            counted = counted * (1.0 - np.clip(lost.sum(axis=0), 0.0, 1.0))
        return _Terms(self._flow(Leak, steps), self._flow(Burst, steps), wet, live, rev_true, counted)

    def _day(self, d: int) -> _Day:
        day = self._days.get(d)
        if day is not None:
            self._days.move_to_end(d)
            return day
        steps = d * DAY_S + self.step_s * np.arange(DAY_S // self.step_s, dtype=np.int64)
        fwd, rev, true_net = _water(self._use(d), self._terms(steps))
        cnet = np.concatenate([[0.0], np.cumsum(fwd - rev)])
        crev = np.concatenate([[0.0], np.cumsum(rev)])
        day = _Day(fwd, rev, true_net, cnet, crev, np.concatenate([[0.0], np.cumsum(true_net)]))
        self._days[d] = day
        while len(self._days) > 4:
            self._days.popitem(last=False)
        return day

    def _at_day(self, d: int) -> tuple[float, float, float]:
        """Registered net, registered reverse and true net volume from installation to day ``d``'s start."""
        first = int(self._install_s // DAY_S)
        if d <= first:
            return 0.0, 0.0, 0.0
        if d not in self._at_midnight:
            known = [k for k in self._at_midnight if k < d]
            k = max(known) if known else first
            net, rev, true = self._at_midnight.get(k, (0.0, 0.0, 0.0))
            for day_net, day_rev, day_true in self._day_totals(k, d):
                net, rev, true = net + day_net, rev + day_rev, true + day_true
                k += 1
                self._at_midnight[k] = (net, rev, true)
        return self._at_midnight[d]

    def _day_totals(self, first: int, last: int) -> Iterator[tuple[float, float, float]]:
        """Each of days ``first`` to ``last - 1``'s (registered net, registered reverse, true net)
        volume, as :meth:`_day` gives them (the last of its ``cnet``, ``crev`` and ``ctrue``), to the bit.

        :meth:`_day` works out the installation day and each day in which a fault that changes the
        water (leak, burst, reverse flow, tamper, stuck, dry) starts or ends. Any other day lies
        wholly after the installation, and each such fault is on all day or not at all: its terms
        in :meth:`_day` are the same for every step of every such day (a step's overlap with the
        fault is the step or nothing), so they are worked out once for a run of days with the same
        faults on (:meth:`_terms`) and combined with each day's use (:meth:`_plain_use`, drawn as
        :meth:`_day` draws it) by :func:`_water`, as :meth:`_day` combines them; the calendar is
        read a year at a time. A day with no such fault on is the use alone: its registered and
        true net are the cumulative sum of the use and its reverse nothing.

        A meter installed in 1970 walked its 20,000 days through :meth:`_day` in some 14 s of CPU
        before its first reading; one whose leak has run since (never ended) still took 12-13 s,
        its every day through :meth:`_day`. Both now take about 5 s."""
        spans = [
            (_s(f.start), math.inf if f.end is None else _s(f.end)) for f in self.faults if isinstance(f, _STEPPED)
        ]
        # the days from which the faults on may change: the day of each start and end, and the next
        changes = sorted(
            {
                k
                for span in spans
                for t in span
                if math.isfinite(t)
                for k in (math.floor(t / DAY_S), math.ceil(t / DAY_S))
            }
        )
        plain_from = math.ceil(self._install_s / DAY_S)  # the first day wholly after the installation
        d = first
        while d < last:
            if d < plain_from or any(d * DAY_S < t < (d + 1) * DAY_S for span in spans for t in span):
                day = self._day(d)
                yield float(day.cnet[-1]), float(day.crev[-1]), float(day.ctrue[-1])
                d += 1
                continue
            # (a year's calendar at once)
            until = min([last, d + 366, *(k for k in changes if k > d)])
            on = any(a <= d * DAY_S and (d + 1) * DAY_S <= b for a, b in spans)
            steps = d * DAY_S + self.step_s * np.arange(DAY_S // self.step_s, dtype=np.int64)
            terms = self._terms(steps) if on else None  # the same for each of days d to until - 1
            days = np.arange(d, until, dtype=np.int64)
            starts = days * DAY_S
            calendar = zip(
                consumption.day_type(starts).tolist(),
                consumption.weekday(starts).tolist(),
                consumption.day_of_year(starts).tolist(),
                strict=True,
            )
            for day_no, (kind, weekday, day_of_year) in zip(days.tolist(), calendar, strict=True):
                use = self._plain_use(day_no, kind, weekday, day_of_year)
                if terms is None:
                    total = float(np.cumsum(use)[-1])
                    yield total, 0.0, total
                else:
                    fwd, rev, true_net = _water(use, terms)
                    yield float(np.cumsum(fwd - rev)[-1]), float(np.cumsum(rev)[-1]), float(np.cumsum(true_net)[-1])
            d = until

    def _use(self, d: int) -> np.ndarray:
        """The customer's use in each step of day ``d``: consumption.customer_use_m3 for the day's
        steps, drawn from the day's own stream, as :meth:`_plain_use` works it out."""
        start = np.array([d * DAY_S], dtype=np.int64)
        kind, weekday = int(consumption.day_type(start)[0]), int(consumption.weekday(start)[0])
        return self._plain_use(d, kind, weekday, int(consumption.day_of_year(start)[0]))

    def _plain_use(self, d: int, kind: int, weekday: int, day_of_year: int) -> np.ndarray:
        """The customer's use in each step of day ``d``, as :meth:`_day` draws it
        (consumption.customer_use_m3), to the bit, in about a quarter of the time.

        Only the hour of a step changes within a day, so the expected use and the irrigation are
        worked out for the day's 24 hours, with the same operations in the same order as
        consumption.class_shape, expected_use_m3 and irrigation_m3 apply to each step, and spread
        over the hours' steps; the day's season is consumption.SEASON_PHASE's, the table that
        consumption.season_phase reads for each step (no cos is taken here, so none can differ with
        an array's length); the use events are drawn from the day's own stream as in :meth:`_day`.
        Proven the same as :meth:`_day` by tests/simulators/test_meter_model_fast_forward.py. ``kind``,
        ``weekday`` and ``day_of_year`` are the day's consumption.day_type, weekday and day of its
        year (0 to 365), for all steps of the day alike."""
        c = self.customers
        klass = int(c.klass[0])
        phase = float(consumption.SEASON_PHASE[day_of_year])
        per_step = self.step_s / consumption.HOUR_S
        seasonal = 1.0 + consumption.SEASONAL_AMPLITUDE[klass] * phase
        shape = consumption.HOURLY_SHARE[klass, kind] * consumption.DAY_WEIGHT[klass, kind] * seasonal * per_step
        per_hour = consumption.HOUR_S // self.step_s
        expected = c.daily_m3[:, None] * np.repeat(shape, per_hour)[None, :]
        steps = d * DAY_S + self.step_s * np.arange(DAY_S // self.step_s, dtype=np.int64)
        away = np.flatnonzero(c.away_end_s > c.away_start_s)
        if away.size:
            gone = (steps[None, :] >= c.away_start_s[away, None]) & (steps[None, :] < c.away_end_s[away, None])
            expected[away] *= ~gone
        hour = np.arange(24)
        running = (hour >= consumption.IRRIGATION_START_HOUR) & (
            hour < consumption.IRRIGATION_START_HOUR + consumption.IRRIGATION_HOURS
        )
        rate = c.irrigation_m3h[:, None] * ((0.7 + 0.3 * phase) * running)[None, :]
        irrigation = rate * c.irrigation_days[:, [weekday]] * per_step
        rng = np.random.default_rng([self.seed, self._key, d])
        use = consumption.draw_use_m3(rng, expected, c.event_m3) + np.repeat(irrigation, per_hour, axis=1)
        return use[0]

    def _cum(self, s: float) -> tuple[float, float, float]:
        """Exact (registered net, registered reverse, true net) volume from installation to second ``s``."""
        s = max(s, self._install_s)
        d = int(s // DAY_S)
        net0, rev0, true0 = self._at_day(d)
        day = self._day(d)
        x = (s - d * DAY_S) / self.step_s
        i = min(int(x), len(day.fwd) - 1)
        part = x - i
        net = net0 + float(day.cnet[i]) + part * float(day.fwd[i] - day.rev[i])
        rev = rev0 + float(day.crev[i]) + part * float(day.rev[i])
        true = true0 + float(day.ctrue[i]) + part * float(day.true_net[i])
        return net, rev, true

    @_locked
    def true_volume_m3(self, at: datetime) -> float:
        """Net volume that really went through since installation (what the network supplied)."""
        return self._cum(_s(at))[2]

    @_locked
    def true_steps_m3(self, d: int) -> np.ndarray:
        """The true net volume of each step of UTC day ``d`` (days since the epoch): what a DMA inlet
        upstream of the meter sees go through, step by step."""
        return self._day(d).true_net.copy()

    @_locked
    def true_flow_m3h(self, at: datetime) -> float:
        s = _s(at)
        d = int(s // DAY_S)
        day = self._day(d)
        i = min(int((s - d * DAY_S) // self.step_s), len(day.fwd) - 1)
        return float(day.true_net[i]) * consumption.HOUR_S / self.step_s

    def _steps(self, s1: float, s2: float) -> tuple[np.ndarray, np.ndarray]:
        """Registered forward and reverse volume of the whole steps in ``[s1, s2)``."""
        a, b = math.floor(s1 / self.step_s), math.ceil(s2 / self.step_s)
        per_day = DAY_S // self.step_s
        fwd, rev = [], []
        for d in range(a // per_day, (b - 1) // per_day + 1):
            day = self._day(d)
            lo, hi = max(a - d * per_day, 0), min(b - d * per_day, per_day)
            fwd.append(day.fwd[lo:hi])
            rev.append(day.rev[lo:hi])
        return np.concatenate(fwd), np.concatenate(rev)

    # ---- what the meter shows -----------------------------------------------------------------

    def _exact_register(self, s: float) -> tuple[float, float]:
        """Unquantized (net register, reverse register) at ``s``, after replacements, before rollover."""
        base, anchor = self.initial_m3, self._install_s
        for f in sorted(self._of(Replacement), key=lambda f: f.start):
            if _s(f.start) <= s:
                assert isinstance(f, Replacement)
                base, anchor = f.new_register_m3, _s(f.start)
        net_a, rev_a, _ = self._cum(anchor)
        net, rev, _ = self._cum(s)
        return base + net - net_a, rev - rev_a

    def _quantize(self, v: float) -> float:
        counts = math.floor(v * self._inv + _EPS)
        return (counts % round(self.modulus_m3 * self._inv)) / self._inv

    def meter_time(self, t: datetime) -> datetime:
        s = _s(t)
        offset = sum(
            f.size * max(0.0, min(s, _s(f.end) if f.end else s) - _s(f.start)) / DAY_S for f in self._of(ClockDrift)
        )
        return t + timedelta(seconds=offset)

    @_locked
    def volume_m3(self, at: datetime) -> float:
        """The register at ``at`` (quantized, after rollover); cheaper than :meth:`read`."""
        return self._quantize(self._exact_register(_s(at))[0])

    @_locked
    def forward_movement_m3(self, at: datetime) -> float:
        """Registered forward volume since installation, exact: never wrapped, reset or turned back.

        What a forward pulse output has given by ``at``: it only rises (reverse flow turns the
        register back, not this), through rollovers and replacements alike.
        """
        net, rev, _ = self._cum(_s(at))
        return net + rev

    @_locked
    def flow_m3h(self, at: datetime) -> float:
        """The flow the meter measures at ``at``: constant within each ``step_s`` step."""
        s = _s(at)
        d = int(s // DAY_S)
        day = self._day(d)
        i = min(int((s - d * DAY_S) // self.step_s), len(day.fwd) - 1)
        return float(day.fwd[i] - day.rev[i]) * consumption.HOUR_S / self.step_s

    @_locked
    def read(self, t: datetime) -> MeterReading:
        s = _s(t)
        if s < self._install_s:
            raise ValueError(f"{self.meter_id} was installed at {self.installed.isoformat()}, after {t}")
        net, rev = self._exact_register(s)
        d = int(s // DAY_S)
        day = self._day(d)
        i = min(int((s - d * DAY_S) // self.step_s), len(day.fwd) - 1)
        per_h = consumption.HOUR_S / self.step_s
        flow = float(day.fwd[i] - day.rev[i]) * per_h
        true_flow = float(day.true_net[i]) * per_h
        forward = net + rev
        return MeterReading(
            meter_id=self.meter_id,
            ts=t,
            meter_time=self.meter_time(t),
            volume_m3=self._quantize(net),
            flow_m3h=flow,
            reverse_volume_m3=self._quantize(rev),
            forward_volume_m3=self._quantize(forward),
            alarms=self._alarms(t, s),
            true_flow_m3h=true_flow,
        )

    def _alarms(self, t: datetime, s: float) -> frozenset[str]:
        out = {f.kind for f in self.faults if isinstance(f, Tamper | Dry | LowBattery | MeterError) and f.active_at(t)}
        if s - self._install_s >= DAY_S:
            fwd, rev = self._steps(s - DAY_S, s)
            if (fwd + rev).min() > 0.0:  # flow, either way, in every step
                out.add("leak")
            if rev.sum() > 0.0:
                out.add("reverse_flow")
        if s - self._install_s >= self.burst_window_s:
            fwd, _ = self._steps(s - self.burst_window_s, s)
            if fwd.sum() / (fwd.size * self.step_s / consumption.HOUR_S) > self.burst_threshold_m3h:
                out.add("burst")
        return frozenset(out)

    # ---- ground truth -------------------------------------------------------------------------

    @_locked
    def rollovers(self, until: datetime) -> list[datetime]:
        """When the register wrapped past its modulus between installation and ``until`` (to 1 s)."""
        modc = round(self.modulus_m3 * self._inv)

        def wraps(s: float) -> int:
            return math.floor(self._exact_register(s)[0] * self._inv + _EPS) // modc

        out: list[datetime] = []
        end = _s(until)
        lo = self._install_s
        while lo < end:
            hi = min(lo + DAY_S, end)
            if wraps(hi) != wraps(lo):
                a, b = lo, hi
                while b - a > 1.0:
                    mid = (a + b) / 2
                    a, b = (a, mid) if wraps(mid) != wraps(a) else (mid, b)
                out.append(datetime.fromtimestamp(math.ceil(b), tz=UTC))
            lo = hi
        return out

    @_locked
    def ground_truth(self, until: datetime) -> list[GroundTruthEvent]:
        """Every fault that started by ``until``, plus the register's rollovers, as ground truth."""
        events = [f.ground_truth(self.meter_id, self.dma, until) for f in self.faults if f.start <= until]
        events += [
            GroundTruthEvent("rollover", self.meter_id, self.dma, t, t, self.modulus_m3) for t in self.rollovers(until)
        ]
        return sorted(events, key=lambda e: (e.start, e.event))
