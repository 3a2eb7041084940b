"""A fleet of meters with known faults, as arrays: the benchmark and test data set for detection.

Vectorised across meters and time: one DMA (a few hundred meters × all intervals) is one set of array
operations; the only Python loops run over DMAs and over the few meters with a fault that needs its
own interpolation, never over readings.

Each DMA draws from its own random stream (seeded by ``(seed, dma)``) and the fault plan from another,
so a fleet is reproducible from its spec alone.

The register at ``timestamps[k]`` holds the volume up to that instant; between two timestamps the flow
is constant per model step, so the exact cumulative volume is piecewise linear and event times that
fall between readings (a rollover, a replacement) are placed exactly.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from simulators import consumption, network
from simulators.ground_truth import GroundTruthEvent, write_ground_truth

__all__ = ["Fleet", "FleetComponents", "FleetSpec", "GroundTruthEvent", "generate_fleet"]

_EPS = 1e-7  # in register counts: keeps an exact 12.345 from flooring to 12.344 by float error
_NONE_S = np.iinfo(np.int64).max // 4  # "no end" as epoch seconds, far beyond any data

#: Per-meter fault kinds in the order their meters are drawn (each faulty meter has exactly one).
METER_FAULTS = ("leak", "burst", "reverse_flow", "stuck", "tamper", "replacement", "rollover", "clock_drift")


@dataclass(frozen=True)
class FleetSpec:
    meters: int  # customer meters; one extra inlet meter per DMA is added
    days: int
    interval_minutes: int = 60
    seed: int = 0
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    meters_per_dma: int = 500
    register_resolution_m3: float = 0.001
    leak_fraction: float = 0.01  # share of customer meters that get a continuous leak
    burst_fraction: float = 0.002
    reverse_flow_fraction: float = 0.001
    stuck_fraction: float = 0.001
    dma_bursts: int = 0  # main bursts per fleet (on inlet meters only)
    missing_read_fraction: float = 0.0
    tamper_fraction: float = 0.0005
    replacement_fraction: float = 0.0005
    rollover_fraction: float = 0.0005
    clock_drift_fraction: float = 0.0005
    leak_lph: tuple[float, float] = (2.0, 200.0)  # log-uniform
    burst_lph: tuple[float, float] = (300.0, 3000.0)
    reverse_flow_lph: tuple[float, float] = (10.0, 200.0)
    dma_burst_share: tuple[float, float] = (0.03, 0.30)  # of the inlet's mean flow, log-uniform
    background_leakage_share: tuple[float, float] = (0.08, 0.25)  # of the DMA's customer demand
    leak_repair_probability: float = 0.3
    customer_register_modulus_m3: float = 100_000.0  # 5 integer digits: 99999.999 then 0
    inlet_register_modulus_m3: float = 100_000_000.0
    mix: consumption.CustomerMix = field(default_factory=consumption.CustomerMix)
    keep_components: bool = False  # keep the true volumes behind the registers (memory: 2 × M × T)
    #: Customer meters keep a backward-volume register too (``Fleet.reverse_m3``; memory: M × T).
    reverse_registers: bool = False
    #: The flow of one use event (a tap or a shower running). While the household draws, the meter
    #: runs forwards and its backward register stands still: a backward flow moves that register
    #: only in the rest of the interval, a share ``1 - use / (use_flow_lph × interval)`` of it.
    use_flow_lph: float = 500.0

    def __post_init__(self) -> None:
        if self.meters < 1 or self.days < 1 or self.meters_per_dma < 1:
            raise ValueError("meters, days and meters_per_dma must be positive")
        if self.interval_minutes < 1 or (self.days * 1440) % self.interval_minutes:
            raise ValueError(f"interval_minutes={self.interval_minutes} must divide the {self.days} days")
        if self.days * 1440 // self.interval_minutes < 2:
            raise ValueError("a fleet needs at least two readings per meter")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware UTC")
        if not self.use_flow_lph > 0:
            raise ValueError("use_flow_lph must be positive")
        inv = 1.0 / self.register_resolution_m3
        if abs(inv - round(inv)) > 1e-9 * inv:
            raise ValueError("register_resolution_m3 must be 1/n for an integer n (0.001, 0.01, 0.1, 1)")
        shares = [getattr(self, f"{k}_fraction") for k in METER_FAULTS]
        if any(s < 0 for s in shares) or sum(shares) > 1:
            raise ValueError("fault fractions must be non-negative and sum to at most 1")


@dataclass
class FleetComponents:
    """The true volumes per interval behind the registers (interval k is [timestamps[k], timestamps[k+1]))."""

    customer_m3: np.ndarray  # (customers, T-1) net true volume through each customer meter
    leakage_m3: np.ndarray  # (DMAs, T-1) background network leakage
    dma_burst_m3: np.ndarray  # (DMAs, T-1) main bursts
    dma_names: np.ndarray  # (DMAs,)


@dataclass
class Fleet:
    meter_ids: np.ndarray  # (M,) str
    dma: np.ndarray  # (M,) str
    role: np.ndarray  # (M,) str: "customer" or "inlet"
    timestamps: np.ndarray  # (T,) datetime64[s], UTC, regular interval
    volume_m3: np.ndarray  # (M, T) float64 cumulative register quantized to resolution; NaN = missing read
    ground_truth: list[GroundTruthEvent]
    customer_class: np.ndarray | None = None  # (M,) str: residential | commercial | irrigation | inlet
    components: FleetComponents | None = None
    resolution_m3: float = 0.001
    #: (M, T) the customer meters' backward registers (``FleetSpec.reverse_registers``), quantized
    #: like ``volume_m3``; NaN for inlets and missing reads. None: not generated.
    reverse_m3: np.ndarray | None = None
    #: (M,) which meters supply many premises (a block of flats, a bulk user), as meterization
    #: would register them; None: none does.
    bulk: np.ndarray | None = None

    def write_readings_csv(self, path: Path) -> None:
        """``meter_id,ts,volume_m3``, one row per reading, missing reads omitted; and
        ``reverse_volume_m3`` where the fleet has backward registers (empty for inlets)."""
        ts = np.char.add(np.datetime_as_string(self.timestamps, unit="s"), "Z").tolist()
        decimals = max(0, round(-math.log10(self.resolution_m3)))
        with path.open("w", encoding="utf-8", newline="") as f:
            f.write("meter_id,ts,volume_m3" + (",reverse_volume_m3\n" if self.reverse_m3 is not None else "\n"))
            for i, mid in enumerate(self.meter_ids.tolist()):
                row = self.volume_m3[i]
                ok = np.flatnonzero(~np.isnan(row))
                values = row[ok].tolist()
                lines = [f"{mid},{ts[k]},{v:.{decimals}f}" for k, v in zip(ok.tolist(), values, strict=True)]
                if self.reverse_m3 is not None:
                    back = self.reverse_m3[i, ok].tolist()
                    lines = [
                        f"{line},{'' if b != b else f'{b:.{decimals}f}'}" for line, b in zip(lines, back, strict=True)
                    ]
                f.writelines(line + "\n" for line in lines)

    def write_meters_csv(self, path: Path) -> None:
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["meter_id", "dma", "role"])
            w.writerows(zip(self.meter_ids.tolist(), self.dma.tolist(), self.role.tolist(), strict=True))

    def write_ground_truth(self, path: Path) -> None:
        write_ground_truth(self.ground_truth, path)


@dataclass
class _Plan:
    """Which customer meters get which fault, when and how large (all arrays indexed by meter)."""

    kind: np.ndarray  # (C,) int8 index into METER_FAULTS, -1 = none
    start_s: np.ndarray  # (C,) int64
    end_s: np.ndarray  # (C,) int64, _NONE_S = no end
    size: np.ndarray  # (C,) float64: L/h for flows, s/day for drift, registered share for tamper
    dma_burst_dma: np.ndarray  # (B,) int
    dma_burst_start_s: np.ndarray
    dma_burst_end_s: np.ndarray
    dma_burst_share: np.ndarray


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = lo_hi
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def _plan(spec: FleetSpec, t0: int, t_last: int, n_dma: int) -> _Plan:
    rng = np.random.default_rng([spec.seed, 0])
    c = spec.meters
    kind = np.full(c, -1, dtype=np.int8)
    start = rng.integers(t0, t_last, c, dtype=np.int64)
    end = np.full(c, _NONE_S, dtype=np.int64)
    size = np.zeros(c)
    order = rng.permutation(c)
    at = 0
    hour, day = 3600, 86400
    for code, name in enumerate(METER_FAULTS):
        n = round(getattr(spec, f"{name}_fraction") * c)
        rows = order[at : at + n]
        at += n
        kind[rows] = code
        if name == "leak":
            size[rows] = _log_uniform(rng, spec.leak_lph, n)
            repaired = rng.random(n) < spec.leak_repair_probability
            dur = (rng.exponential(7.0, n) * day).astype(np.int64) + hour
            end[rows] = np.where(repaired, start[rows] + dur, _NONE_S)
        elif name == "burst":
            size[rows] = _log_uniform(rng, spec.burst_lph, n)
            end[rows] = start[rows] + rng.integers(1 * hour, 48 * hour, n)
        elif name == "reverse_flow":
            size[rows] = _log_uniform(rng, spec.reverse_flow_lph, n)
            end[rows] = start[rows] + rng.integers(1 * hour, 24 * hour, n)
        elif name == "tamper":
            size[rows] = rng.uniform(0.0, 0.3, n)
            end[rows] = start[rows] + rng.integers(1 * day, 10 * day, n)
        elif name == "replacement":
            end[rows] = start[rows]
        elif name == "clock_drift":
            size[rows] = rng.uniform(60.0, 600.0, n) * rng.choice([-1.0, 1.0], n)
        # stuck: from start to the end of data; rollover: start is the target crossing time
    b = spec.dma_bursts
    b_start = rng.integers(t0, t_last, b, dtype=np.int64)
    b_end = b_start + (rng.uniform(6.0, 24.0 * 7, b) * hour).astype(np.int64)
    return _Plan(
        kind,
        start,
        end,
        size,
        rng.integers(0, n_dma, b),
        b_start,
        b_end,
        _log_uniform(rng, spec.dma_burst_share, b),
    )


def _dt(s: int) -> datetime:
    return datetime.fromtimestamp(int(s), tz=UTC)


def _end_dt(s: int, t_last: int) -> datetime | None:
    return None if s > t_last else _dt(s)


def _interp_rows(r: np.ndarray, ts: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Exact cumulative volume of each row of ``r`` at time ``at[row]`` (piecewise linear)."""
    return np.array([np.interp(a, ts, row) for a, row in zip(at, r, strict=True)])


def _quantize(r: np.ndarray, inv: int, modulus_m3: float) -> np.ndarray:
    counts = np.floor(r * inv + _EPS)
    modc = round(modulus_m3 * inv)
    if counts.size and (counts.min() < 0 or counts.max() >= modc):
        counts = np.mod(counts, modc)
    return counts / inv


def _rollovers(r: np.ndarray, ts: np.ndarray, inv: int, modulus: float) -> list[tuple[int, int]]:
    """(row, epoch second) of every wrap of the quantized register, timed on the exact volume."""
    modc = round(modulus * inv)
    lo_wrap = np.floor_divide(np.floor(r.min(axis=1) * inv + _EPS), modc)
    hi_wrap = np.floor_divide(np.floor(r.max(axis=1) * inv + _EPS), modc)
    out = []
    for row in np.flatnonzero(lo_wrap != hi_wrap).tolist():
        wraps = np.floor_divide(np.floor(r[row] * inv + _EPS), modc)
        for k in np.flatnonzero(np.diff(wraps) != 0).tolist():
            lo, hi = r[row, k], r[row, k + 1]
            level = (max(wraps[k], wraps[k + 1]) * modc - _EPS) / inv
            frac = min(max((level - lo) / (hi - lo), 0.0), 1.0) if hi != lo else 1.0
            out.append((row, math.ceil(ts[k] + frac * (ts[k + 1] - ts[k]))))
    return out


def _register_faults(
    r: np.ndarray, ts: np.ndarray, kind: np.ndarray, start: np.ndarray, size: np.ndarray
) -> np.ndarray:
    """The registers ``r`` (rows: meters, exact cumulative m³) as the meters show them: a drifting
    clock labels values early or late, a stuck register stops, a replacement starts from zero."""
    rows = np.flatnonzero(kind == METER_FAULTS.index("clock_drift"))
    for row in rows.tolist():
        # A fast clock reaches the label ts early: the value labelled ts is the true one at ts - offset.
        offset = size[row] / 86400.0 * np.clip(ts - start[row], 0, None)
        r[row] = np.interp(ts - offset, ts, r[row])
    rows = np.flatnonzero(kind == METER_FAULTS.index("stuck"))
    if rows.size:
        frozen = _interp_rows(r[rows], ts, start[rows])
        after = ts[None, :] >= start[rows, None]
        r[rows] = np.where(after, frozen[:, None], r[rows])
    rows = np.flatnonzero(kind == METER_FAULTS.index("replacement"))
    if rows.size:
        at_replacement = _interp_rows(r[rows], ts, start[rows])
        after = ts[None, :] >= start[rows, None]
        r[rows] = np.where(after, r[rows] - at_replacement[:, None], r[rows])
    return r


def generate_fleet(spec: FleetSpec) -> Fleet:
    interval_s = spec.interval_minutes * 60
    step_s = math.gcd(interval_s, consumption.HOUR_S)
    per_interval = interval_s // step_s
    t_count = spec.days * 1440 // spec.interval_minutes
    t0 = int(spec.start.timestamp())
    ts = t0 + interval_s * np.arange(t_count, dtype=np.int64)
    t_last = int(ts[-1])
    starts = ts[:-1]
    step_starts = (t0 + step_s * np.arange((t_count - 1) * per_interval, dtype=np.int64)).astype(np.int64)
    inv = round(1.0 / spec.register_resolution_m3)
    n_dma = -(-spec.meters // spec.meters_per_dma)
    plan = _plan(spec, t0, t_last, n_dma)
    res = spec.register_resolution_m3

    volume = np.empty((spec.meters + n_dma, t_count))
    reverse = np.full((spec.meters + n_dma, t_count), np.nan) if spec.reverse_registers else None
    klass = np.empty(spec.meters, dtype=np.int8)
    truth: list[GroundTruthEvent] = []
    comp_customer = np.empty((spec.meters, t_count - 1)) if spec.keep_components else None
    comp_leak = np.empty((n_dma, t_count - 1)) if spec.keep_components else None
    comp_burst = np.empty((n_dma, t_count - 1)) if spec.keep_components else None
    dma_names = np.array([f"DMA{d + 1:03d}" for d in range(n_dma)])
    customer_ids = np.array([f"M{i + 1:06d}" for i in range(spec.meters)])

    for d in range(n_dma):
        rng = np.random.default_rng([spec.seed, 1, d])
        lo, hi = d * spec.meters_per_dma, min((d + 1) * spec.meters_per_dma, spec.meters)
        n = hi - lo
        dma = str(dma_names[d])
        customers = consumption.draw_customers(rng, n, t0, t_last, spec.mix)
        klass[lo:hi] = customers.klass
        use = consumption.customer_use_m3(rng, customers, step_starts, step_s)
        if per_interval > 1:
            use = use.reshape(n, t_count - 1, per_interval).sum(axis=2)
        kind = plan.kind[lo:hi]
        p_start, p_end, p_size = plan.start_s[lo:hi], plan.end_s[lo:hi], plan.size[lo:hi]

        # Flows a customer-side fault adds (leak, burst) or sends backwards (reverse flow).
        true_net = use.copy()
        backward = np.zeros_like(use) if reverse is not None else None
        for name, sign in (("leak", 1.0), ("burst", 1.0), ("reverse_flow", -1.0)):
            rows = np.flatnonzero(kind == METER_FAULTS.index(name))
            if rows.size:
                flow = network.constant_flow_m3(p_size[rows] / 1000.0, p_start[rows], p_end[rows], starts, interval_s)
                true_net[rows] += sign * flow
                if name == "reverse_flow" and backward is not None:
                    in_use = use[rows] / (spec.use_flow_lph / 1000.0 * interval_s / consumption.HOUR_S)
                    backward[rows] = flow * np.clip(1.0 - in_use, 0.0, 1.0)
        registered = true_net.copy()
        rows = np.flatnonzero(kind == METER_FAULTS.index("tamper"))
        if rows.size:
            frac = network.constant_flow_m3(np.ones(rows.size), p_start[rows], p_end[rows], starts, interval_s)
            frac *= 3600.0 / interval_s
            registered[rows] -= (1.0 - p_size[rows, None]) * frac * use[rows]

        cum = np.zeros((n, t_count))
        np.cumsum(registered, axis=1, out=cum[:, 1:])
        init = np.round(rng.lognormal(np.log(400.0), 1.0, n).clip(1.0, 20_000.0), 3)
        rows = np.flatnonzero(kind == METER_FAULTS.index("rollover"))
        if rows.size:
            init[rows] = spec.customer_register_modulus_m3 - _interp_rows(cum[rows], ts, p_start[rows])
        r = init[:, None] + cum

        r = _register_faults(r, ts, kind, p_start, p_size)
        volume[lo:hi] = _quantize(r, inv, spec.customer_register_modulus_m3)
        if reverse is not None and backward is not None:
            backward_cum = np.zeros((n, t_count))
            np.cumsum(backward, axis=1, out=backward_cum[:, 1:])
            backward_cum = _register_faults(backward_cum, ts, kind, p_start, p_size)
            reverse[lo:hi] = _quantize(backward_cum, inv, spec.customer_register_modulus_m3)

        for row in np.flatnonzero(kind >= 0).tolist():
            name = METER_FAULTS[kind[row]]
            if name == "rollover":
                continue  # found from the register itself below
            s = int(p_start[row])
            end = _end_dt(int(p_end[row]), t_last)
            size = float(p_size[row])
            if name == "replacement":
                end = _dt(s)
            truth.append(GroundTruthEvent(name, str(customer_ids[lo + row]), dma, _dt(s), end, size))
        for row, s in _rollovers(r, ts.astype(np.float64), inv, spec.customer_register_modulus_m3):
            if s <= t_last:
                m = spec.customer_register_modulus_m3
                truth.append(GroundTruthEvent("rollover", str(customer_ids[lo + row]), dma, _dt(s), _dt(s), m))

        # The inlet: everything the customers really took, plus what the mains lose.
        demand_m3h = float(consumption.mean_daily_m3(customers).sum()) / 24.0
        leak_m3h = demand_m3h * rng.uniform(*spec.background_leakage_share)
        leakage = network.background_leakage_m3(np.array([leak_m3h]), starts, interval_s)[0]
        mine = np.flatnonzero(plan.dma_burst_dma == d)
        burst_rate = plan.dma_burst_share[mine] * (demand_m3h + leak_m3h)
        bursts = network.constant_flow_m3(
            burst_rate, plan.dma_burst_start_s[mine], plan.dma_burst_end_s[mine], starts, interval_s
        ).sum(axis=0)
        for k, i in enumerate(mine.tolist()):
            s, e = int(plan.dma_burst_start_s[i]), int(plan.dma_burst_end_s[i])
            truth.append(
                GroundTruthEvent("dma_burst", None, dma, _dt(s), _end_dt(e, t_last), float(burst_rate[k] * 1000.0))
            )
        inlet_inc = true_net.sum(axis=0) + leakage + bursts
        inlet = np.empty(t_count)
        inlet[0] = round(float(rng.uniform(1e4, 1e6)), 3)
        inlet[1:] = inlet[0] + np.cumsum(inlet_inc)
        volume[spec.meters + d] = _quantize(inlet[None, :], inv, spec.inlet_register_modulus_m3)[0]
        if comp_customer is not None and comp_leak is not None and comp_burst is not None:
            comp_customer[lo:hi] = true_net
            comp_leak[d] = leakage
            comp_burst[d] = bursts

    if spec.missing_read_fraction > 0:
        miss = np.random.default_rng([spec.seed, 2]).random(volume.shape) < spec.missing_read_fraction
        volume[miss] = np.nan
        if reverse is not None:
            reverse[miss] = np.nan  # a reading lost is lost whole

    class_names = np.array(["residential", "commercial", "irrigation"])
    meter_dma = np.concatenate([dma_names[np.arange(spec.meters) // spec.meters_per_dma], dma_names])
    truth.sort(key=lambda e: (e.start, e.meter_id or "", e.event))
    components = None
    if comp_customer is not None and comp_leak is not None and comp_burst is not None:
        components = FleetComponents(comp_customer, comp_leak, comp_burst, dma_names)
    return Fleet(
        meter_ids=np.concatenate([customer_ids, np.char.add(dma_names, "-INLET")]),
        dma=meter_dma,
        role=np.array(["customer"] * spec.meters + ["inlet"] * n_dma),
        timestamps=ts.astype("datetime64[s]"),
        volume_m3=volume,
        ground_truth=truth,
        customer_class=np.concatenate([class_names[klass], np.full(n_dma, "inlet")]),
        components=components,
        resolution_m3=res,
        reverse_m3=reverse,
    )


def timestamps_to_datetimes(timestamps: np.ndarray) -> list[datetime]:
    """The fleet's ``datetime64[s]`` timestamps as aware UTC datetimes."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return [epoch + timedelta(seconds=int(s)) for s in timestamps.astype(np.int64)]
