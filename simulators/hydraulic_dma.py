"""A DMA whose inlet comes from a hydraulic network model: WNTR on one of the EPANET networks it ships.

The fleet generator (:mod:`simulators.fleet`) gives the mains' background leakage a fixed daily curve
and a main burst a constant flow. Real leaks are orifices: their flow follows the pressure at the
pipe, which moves with the network's demand, its pumps and its tank levels, so a DMA balance is less
steady than that curve and a burst's flow changes through the day. Here WNTR's pressure-driven leak
model (``Junction.add_leak``: flow = Cd · A · √(2 g p)) gives both, on the network as EPANET
describes it, so the district detector can be scored the way LeakDB scores on its Hanoi network.

One network is one DMA. Its customers:

* each junction whose demand follows the network's default (residential) pattern feeds
  ``meters_per_junction`` meters, each a block of :mod:`simulators.consumption`'s customers
  (holidays, irrigation, commercial, heavy households) as many as its share of the junction's mean
  demand holds (the EPANET networks are cities: about 80 to a meter on Net3), their uses summed and
  scaled together to that demand. A block of independent households is far smoother than one
  household scaled up to its size, whose every shower was a burst of a block's size (thousands of
  false customer bursts a day on the benchmark);
* each junction with its own pattern (Net3's industrial users) is one bulk meter on that pattern,
  with 5% hourly noise.

The inlet meter is the DMA's total supply: everything the junctions drew plus every leak's flow (in
Net3, what the river and lake sources give less what the tanks store). Customer meters register
their true volume with a per-meter error (mean ``meter_error_mean``, spread ``meter_error_sd``), so
the balance carries apparent losses as a real one does. Main bursts are leaks on a new junction
splitting a pipe (WNTR allows one leak per junction; the background leaks hold the existing ones).
Ground truth is a :class:`GroundTruthEvent` per main burst whose ``size`` is its simulated mean
flow over the data, in L/h.

WNTR is a test and benchmark dependency (the ``dev`` extra), imported only inside these functions:
the gateway, collector and demo never load it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from simulators import consumption
from simulators.fleet import Fleet
from simulators.ground_truth import GroundTruthEvent

__all__ = ["NetworkDmaSpec", "generate_network_dma", "shipped_network"]

_HOUR_S = 3600
_DISCHARGE_COEFF = 0.75  # WNTR's default for add_leak
_G = 9.81


@dataclass(frozen=True)
class NetworkDmaSpec:
    days: int = 35
    seed: int = 0
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    network: str = "Net3"  # an EPANET network shipped with WNTR, or a path to an .inp file
    dma: str = ""  # the DMA's name; empty: the network's, upper-cased
    meters_per_junction: int = 8
    #: The most households summed into one meter (the rest of its share of the demand is scaled in).
    households_per_meter_max: int = 500
    bursts: int = 2
    burst_share: tuple[float, float] = (0.03, 0.30)  # of the inlet's mean flow, log-uniform
    burst_hours: tuple[float, float] = (6.0, 240.0)  # duration, log-uniform; past the data end: still on
    first_burst_day: int = 7  # the detectors' warm-up: no burst starts before it
    background_leakage_share: float = 0.12  # of the customers' mean demand, at mean pressure
    meter_error_mean: float = -0.005  # customer meters slightly under-register, as old ones do
    meter_error_sd: float = 0.01
    missing_read_fraction: float = 0.01
    hydraulic_step_s: int = 900  # bursts start on these steps; reads are hourly
    mix: consumption.CustomerMix = field(default_factory=consumption.CustomerMix)

    def __post_init__(self) -> None:
        if self.days <= self.first_burst_day + 1:
            raise ValueError("days must leave at least a day after first_burst_day")
        if _HOUR_S % self.hydraulic_step_s:
            raise ValueError("hydraulic_step_s must divide an hour")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware UTC")


def shipped_network(name: str) -> Path:
    """The path of an EPANET network WNTR ships (Net1, Net2, Net3, Net6, ky4, ky10), or ``name`` itself."""
    import wntr

    shipped = Path(wntr.__file__).parent / "library" / "networks" / f"{name}.inp"
    return shipped if shipped.exists() else Path(name)


def generate_network_dma(spec: NetworkDmaSpec) -> Fleet:
    """Simulate ``spec.days`` of the network with its customers, background leakage and main bursts."""
    import wntr

    # one stream each for the customers, the bursts and the meters: a change to how customers are
    # drawn leaves the scenario's bursts where they were (one stream had moved them with it)
    customers_rng, bursts_rng, meters_rng = (np.random.default_rng([spec.seed, 31, part]) for part in range(3))
    dma = spec.dma or Path(spec.network).stem.upper()
    t_count = spec.days * 24
    t0 = int(spec.start.timestamp())
    ts = t0 + _HOUR_S * np.arange(t_count, dtype=np.int64)
    hours = t_count - 1

    wn = wntr.network.WaterNetworkModel(str(shipped_network(spec.network)))
    _repeat_time_controls_daily(wn)
    demand_nodes, meter_use_m3, meter_node, klass, bulk_meter = _customers(wn, customers_rng, spec, ts[:-1])
    _set_demand_patterns(wn, demand_nodes, meter_use_m3, meter_node)
    wn.options.time.duration = hours * _HOUR_S
    wn.options.time.hydraulic_timestep = spec.hydraulic_step_s
    wn.options.time.report_timestep = spec.hydraulic_step_s
    wn.options.time.pattern_timestep = _HOUR_S

    pressure = _mean_pressure(wn, days=2)
    demand_m3h = float(meter_use_m3.sum()) / hours
    _add_background_leakage(wn, pressure, spec.background_leakage_share * demand_m3h)
    bursts = _add_main_bursts(wn, bursts_rng, spec, pressure, demand_m3h * (1 + spec.background_leakage_share))

    results = wntr.sim.WNTRSimulator(wn).run_sim()
    leak = results.node["leak_demand"]
    per_hour = _HOUR_S // spec.hydraulic_step_s
    leak_m3 = leak.to_numpy()[: hours * per_hour] * spec.hydraulic_step_s  # (steps, nodes)
    leak_m3 = leak_m3.reshape(hours, per_hour, -1).sum(axis=1)  # (hours, nodes)
    columns = list(leak.columns)
    burst_m3 = {name: leak_m3[:, columns.index(name)] for name, _, _ in bursts}
    losses_m3 = leak_m3.sum(axis=1)

    truth = []
    t_last = int(ts[-1])
    for name, start_s, end_s in bursts:
        on = np.clip(np.minimum(ts[1:], end_s) - np.maximum(ts[:-1], start_s), 0, None) / _HOUR_S
        # to the millilitre: the solver's last bits differ from run to run
        size_l_h = round(1000.0 * float(burst_m3[name].sum()) / float(on.sum()), 3)
        end = None if end_s > t_last else datetime.fromtimestamp(end_s, UTC)
        truth.append(GroundTruthEvent("dma_burst", None, dma, datetime.fromtimestamp(start_s, UTC), end, size_l_h))
    truth.sort(key=lambda e: e.start)

    n = meter_use_m3.shape[0]
    error = np.asarray(meters_rng.normal(spec.meter_error_mean, spec.meter_error_sd, n))
    registered = meter_use_m3 * (1.0 + error[:, None])
    volume = np.empty((n + 1, t_count))
    volume[:n, 0] = np.round(meters_rng.lognormal(math.log(400.0), 1.0, n), 3)
    volume[:n, 1:] = volume[:n, :1] + np.cumsum(registered, axis=1)
    volume[n, 0] = round(float(meters_rng.uniform(1e4, 1e6)), 3)
    volume[n, 1:] = volume[n, 0] + np.cumsum(meter_use_m3.sum(axis=0) + losses_m3)
    volume = np.floor(volume * 1000.0 + 1e-7) / 1000.0  # 1-litre registers
    missing = meters_rng.random(volume.shape) < spec.missing_read_fraction
    volume[missing] = np.nan

    ids = [f"{dma}-{node}-{k}" for k, node in enumerate(meter_node)]
    names = np.array(["residential", "commercial", "irrigation", "commercial"])  # 3: a bulk (industrial) meter
    return Fleet(
        meter_ids=np.array([*ids, f"{dma}-INLET"]),
        dma=np.full(n + 1, dma),
        role=np.array(["customer"] * n + ["inlet"]),
        timestamps=ts.astype("datetime64[s]"),
        volume_m3=volume,
        ground_truth=truth,
        customer_class=np.array([*names[klass].tolist(), "inlet"]),
        resolution_m3=0.001,
        bulk=np.append(bulk_meter, False),
    )


def _repeat_time_controls_daily(wn: Any) -> None:
    """EPANET's ``AT TIME`` controls (Net3's river pump: on at 01:00, off at 15:00, written out for one
    week) as the same rules at that clock time every day, so a five-week run keeps the week's regime."""
    from wntr.network.controls import Control, SimTimeCondition, TimeOfDayCondition

    daily: dict[tuple[int, str, str, str], Any] = {}
    for name, control in list(wn.controls()):
        if not isinstance(control.condition, SimTimeCondition):
            continue
        wn.remove_control(name)
        at = int(control.condition._threshold) % 86_400
        for action in control.actions():
            target, attribute = action.target()
            key = (at, target.name, attribute, str(action._value))
            daily[key] = action
    for k, ((at, link, attribute, value), action) in enumerate(sorted(daily.items(), key=lambda kv: kv[0])):
        clock = f"{at // 3600:02d}:{at % 3600 // 60:02d}:{at % 60:02d}"
        condition = TimeOfDayCondition(wn, "Is", clock, repeat=True)
        wn.add_control(f"daily {k} {link} {attribute} {value}", Control(condition, action))


def _customers(
    wn: Any, rng: np.random.Generator, spec: NetworkDmaSpec, hour_starts: np.ndarray
) -> tuple[list[str], np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(junctions with demand, each meter's true use per hour (meters, hours) m3, each meter's
    junction, each meter's class: 0–2 :class:`consumption.CustomerClass`, 3 bulk; and which meters
    supply many premises, a block of several households or a bulk user, as meterization knows)."""
    default_pattern = wn.options.hydraulic.pattern
    nodes: list[str] = []
    residential: list[tuple[str, float]] = []
    bulk: list[tuple[str, float, np.ndarray]] = []
    for name, junction in wn.junctions():
        series: list[np.ndarray] = []  # m3 per hour of each of the junction's demands, over its pattern
        own = False  # a demand on a pattern of its own: a bulk user
        for demand in junction.demand_timeseries_list:
            pattern = demand.pattern_name or default_pattern
            multipliers = np.asarray(wn.get_pattern(pattern).multipliers, dtype=np.float64) if pattern else np.ones(1)
            series.append(demand.base_value * multipliers * _HOUR_S)
            own = own or bool(pattern and pattern != default_pattern)
        total = sum(float(m3h.mean()) for m3h in series)
        if total <= 0:
            continue
        nodes.append(name)
        if own:
            period = max(m3h.size for m3h in series)  # np.resize repeats each pattern over it
            bulk.append((name, total, np.sum([np.resize(m3h, period) for m3h in series], axis=0)))
        else:
            residential.append((name, total))

    k = spec.meters_per_junction
    start, end = int(hour_starts[0]), int(hour_starts[-1]) + _HOUR_S
    # the mix's mean use per customer, which sizes the blocks
    sample = consumption.draw_customers(rng, 1000, start, end, spec.mix)
    household_m3h = float(consumption.mean_daily_m3(sample).mean()) / 24.0
    rows: list[np.ndarray] = []
    meter_node: list[str] = []
    klass: list[int] = []
    many: list[bool] = []
    for name, mean_m3h in residential:
        n = int(np.clip(round(mean_m3h / k / household_m3h), 1, spec.households_per_meter_max))
        people = consumption.draw_customers(rng, k * n, start, end, spec.mix)
        blocks = consumption.customer_use_m3(rng, people, hour_starts, _HOUR_S).reshape(k, n, -1).sum(axis=1)
        rows.append(blocks * (mean_m3h / max(float(blocks.sum(axis=0).mean()), 1e-12)))
        meter_node += [name] * k
        # a block is named after most of its customers
        klass += [int(np.bincount(c, minlength=3).argmax()) for c in people.klass.reshape(k, n)]
        many += [n > 1] * k
    hour_of_pattern = ((hour_starts - hour_starts[0]) // _HOUR_S).astype(np.int64)
    for name, _, m3h in bulk:
        noise = rng.lognormal(0.0, 0.05, hour_starts.size)
        rows.append((m3h[hour_of_pattern % m3h.size] * noise)[None, :])
        meter_node.append(name)
        klass.append(3)
        many.append(True)
    return nodes, np.vstack(rows), meter_node, np.array(klass, dtype=np.int64), np.array(many, dtype=bool)


def _set_demand_patterns(wn: Any, nodes: list[str], use_m3: np.ndarray, meter_node: list[str]) -> None:
    """Each junction's demand: its meters' hourly use, as a pattern over the whole run."""
    index = np.array([nodes.index(n) for n in meter_node])
    per_node = np.zeros((len(nodes), use_m3.shape[1]))
    np.add.at(per_node, index, use_m3)
    for name, m3_per_hour in zip(nodes, per_node, strict=True):
        mean = float(m3_per_hour.mean())
        junction = wn.get_node(name)
        junction.demand_timeseries_list.clear()
        wn.add_pattern(f"aquami-{name}", (m3_per_hour / mean).tolist())
        junction.add_demand(mean / _HOUR_S, f"aquami-{name}")


def _mean_pressure(wn: Any, days: int) -> dict[str, float]:
    """Each junction's mean pressure (m) over a short run without leaks: the leak areas are sized on it."""
    import copy

    import wntr

    short = copy.deepcopy(wn)
    short.options.time.duration = days * 86_400
    short.options.time.hydraulic_timestep = _HOUR_S
    short.options.time.report_timestep = _HOUR_S
    pressure = wntr.sim.WNTRSimulator(short).run_sim().node["pressure"]
    return {name: float(pressure[name].mean()) for name, _ in wn.junctions()}


def _orifice_area(flow_m3s: float, pressure_m: float) -> float:
    return flow_m3s / (_DISCHARGE_COEFF * math.sqrt(2 * _G * max(pressure_m, 1.0)))


def _add_background_leakage(wn: Any, pressure: dict[str, float], total_m3h: float) -> None:
    """Many small leaks, one at every junction with pressure, in proportion to the pipe length it
    serves (half of each pipe it ends), together ``total_m3h`` at mean pressure."""
    length = dict.fromkeys(pressure, 0.0)
    for _, pipe in wn.pipes():
        for node in (pipe.start_node_name, pipe.end_node_name):
            if node in length:
                length[node] += pipe.length / 2
    served = {n: m for n, m in length.items() if pressure[n] > 1.0 and m > 0}
    mains = sum(served.values())
    for name, metres in served.items():
        flow = total_m3h / _HOUR_S * metres / mains
        area = _orifice_area(flow, pressure[name])
        wn.get_node(name).add_leak(wn, area=area, discharge_coeff=_DISCHARGE_COEFF, start_time=0)


def _add_main_bursts(
    wn: Any, rng: np.random.Generator, spec: NetworkDmaSpec, pressure: dict[str, float], inflow_m3h: float
) -> list[tuple[str, int, int]]:
    """``spec.bursts`` bursts on pipes drawn at random, each on a new junction splitting its pipe:
    (junction, start, end) in epoch seconds."""
    import wntr

    t0 = int(spec.start.timestamp())
    step = spec.hydraulic_step_s
    first = spec.first_burst_day * 86_400 // step
    last = (spec.days - 1) * 86_400 // step
    pipes = sorted(
        name
        for name, pipe in wn.pipes()
        if pressure.get(pipe.start_node_name, 0.0) > 5.0 and pressure.get(pipe.end_node_name, 0.0) > 5.0
    )
    out: list[tuple[str, int, int]] = []
    for k, pipe in enumerate(rng.choice(pipes, size=spec.bursts, replace=False).tolist()):
        share = math.exp(rng.uniform(math.log(spec.burst_share[0]), math.log(spec.burst_share[1])))
        hours = math.exp(rng.uniform(math.log(spec.burst_hours[0]), math.log(spec.burst_hours[1])))
        begin = int(rng.integers(first, last)) * step
        end = begin + max(1, round(hours * _HOUR_S / step)) * step
        junction = f"burst-{k}"
        wntr.morph.split_pipe(wn, pipe, f"{pipe}-burst-{k}", junction, return_copy=False)
        p = pressure[wn.get_link(pipe).start_node_name]
        area = _orifice_area(share * inflow_m3h / _HOUR_S, p)
        wn.get_node(junction).add_leak(wn, area=area, discharge_coeff=_DISCHARGE_COEFF, start_time=begin, end_time=end)
        out.append((junction, t0 + begin, t0 + end))
    return out
