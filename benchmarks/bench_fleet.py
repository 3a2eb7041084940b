"""Fleet generator speed: the vectorised generator against a per-meter, per-reading Python loop.

Both run the same consumption model on the same small fleet in the same process (customer
parameters from ``draw_customers``, hourly shares, day types, seasons, Poisson use events with Gamma
volumes, irrigation, quantized registers); the loop draws its random numbers one at a time, so its
values differ but not their distribution. Of the faults, the loop adds continuous leaks only (never
repaired); the generator also plans bursts, reverse flow, stuck registers, tamper, replacements,
rollovers and clock drift at ``FleetSpec``'s default shares and adds an inlet meter per DMA, so the
loop does somewhat less work and the ratio errs in its favour. Printed: meter-days per second of
each and the ratio, then the time the vectorised generator takes for a million meter-days at
hourly interval.

    python -m benchmarks.bench_fleet [--meters 200 --days 7] [--million-meters 10000 --million-days 100]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import UTC, datetime

import numpy as np

from simulators import consumption
from simulators.fleet import FleetSpec, generate_fleet


def _day_type_and_phase(s: int) -> tuple[int, float]:
    """Pure-Python day type and season phase of one instant (what a per-reading loop computes)."""
    day = datetime.fromtimestamp(s, tz=UTC)
    weekday = day.weekday()
    holiday = (day.month, day.day) in consumption.PUBLIC_HOLIDAYS
    day_type = 2 if holiday or weekday == 6 else 1 if weekday == 5 else 0
    doy = day.timetuple().tm_yday - 1
    return day_type, math.cos(2.0 * math.pi * (doy - 196) / 365.25)


def naive_fleet(spec: FleetSpec) -> np.ndarray:
    """The same consumption model and leaks, one meter and one reading at a time (the way not to do
    it); no other fault, no inlet meters."""
    rng = np.random.default_rng([spec.seed, 99])
    step = spec.interval_minutes * 60
    t0 = int(spec.start.timestamp())
    n = spec.days * 1440 // spec.interval_minutes
    inv = round(1.0 / spec.register_resolution_m3)
    customers = consumption.draw_customers(rng, spec.meters, t0, t0 + n * step, spec.mix)
    leak = rng.random(spec.meters) < spec.leak_fraction
    leak_start = rng.integers(t0, t0 + n * step, spec.meters)
    leak_m3h = np.exp(rng.uniform(math.log(2.0), math.log(200.0), spec.meters)) / 1000.0
    out = np.empty((spec.meters, n))
    for m in range(spec.meters):
        klass = int(customers.klass[m])
        daily = float(customers.daily_m3[m])
        event = float(customers.event_m3[m])
        register = 100.0
        out[m, 0] = math.floor(register * inv + 1e-7) / inv
        for k in range(n - 1):
            s = t0 + k * step
            day_type, phase = _day_type_and_phase(s)
            hour = (s // 3600) % 24
            away = customers.away_start_s[m] <= s < customers.away_end_s[m]
            mean = 0.0 if away else daily * float(consumption.HOURLY_SHARE[klass, day_type, hour])
            mean *= float(consumption.DAY_WEIGHT[klass, day_type]) * (
                1.0 + float(consumption.SEASONAL_AMPLITUDE[klass]) * phase
            )
            mean *= step / 3600
            events = int(rng.poisson(mean / event))
            volume = float(rng.gamma(2.0 * events, event / 2.0)) if events else 0.0
            if consumption.IRRIGATION_START_HOUR <= hour < consumption.IRRIGATION_START_HOUR + 1:
                weekday = (s // 86400 + 3) % 7
                if customers.irrigation_days[m, weekday]:
                    volume += float(customers.irrigation_m3h[m]) * (0.7 + 0.3 * phase) * step / 3600
            if leak[m]:
                overlap = max(0, min(s + step, 2**62) - max(s, int(leak_start[m])))
                volume += float(leak_m3h[m]) * overlap / 3600
            register += volume
            out[m, k + 1] = math.floor(register * inv + 1e-7) / inv
    return out


def _rate(meter_days: float, seconds: float) -> float:
    return meter_days / seconds if seconds > 0 else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--million-meters", type=int, default=10_000)
    parser.add_argument("--million-days", type=int, default=100)
    args = parser.parse_args()

    small = FleetSpec(meters=args.meters, days=args.days, meters_per_dma=100)
    meter_days = args.meters * args.days
    t = time.perf_counter()
    naive_fleet(small)
    naive_s = time.perf_counter() - t
    t = time.perf_counter()
    generate_fleet(small)
    vector_s = time.perf_counter() - t

    big = FleetSpec(meters=args.million_meters, days=args.million_days)
    t = time.perf_counter()
    fleet = generate_fleet(big)
    big_s = time.perf_counter() - t
    big_meter_days = args.million_meters * args.million_days
    result = {
        "small_fleet": {"meters": args.meters, "days": args.days, "interval_minutes": 60},
        "naive_meter_days_per_s": round(_rate(meter_days, naive_s), 1),
        "vectorised_meter_days_per_s": round(_rate(meter_days, vector_s), 1),
        "speedup": round(naive_s / vector_s, 1) if vector_s > 0 else None,
        "large_fleet": {
            "meter_days": big_meter_days,
            "meters": fleet.volume_m3.shape[0],
            "readings": int(fleet.volume_m3.size),
            "seconds": round(big_s, 2),
            "meter_days_per_s": round(_rate(big_meter_days, big_s), 1),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
