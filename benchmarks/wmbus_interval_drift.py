"""False failed polls of wireless M-Bus meters that send every interval, and how soon a stopped one is said silent.

A wireless meter is heard, never polled: the listener counts a failed poll for each send interval
that ends without the meter's telegram (``WMBusListener.check_silence``). The old rule, the baseline
here, began the next interval at the check that ended the last, so the boundaries drifted through
the meter's send times; the grid rule (each interval begins where the one before ended) is the
obvious fix, measured to show why it is not enough; the rule now (``gateway.wmbus_intervals``: each
interval from the meter's last telegram, with a grace of a quarter interval) is the real listener's,
driven on a clock the benchmark moves (no waiting).

The meter sends every 15 minutes for 1,000 intervals, either exactly (from a random phase) or as the
project's receiver simulator sends (``simulators.wmbus_receiver.next_send``: ±2 % a send, its phase a
random walk); the listener checks each interval (the bus's interval is the meter's, plus up to 10 ms
each time for the event loop) or each minute (a bus of 60 s). Then 200 meters that stop at a random
moment: the worst delay from their next telegram due to the first failed poll, against the bound
of one interval and one check period.

    .venv/bin/python -m benchmarks.wmbus_interval_drift
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence

from aquami.contracts.reads import Reading
from firmware_protocols.mbus.build import build_user_data
from firmware_protocols.records import DataRecord
from firmware_protocols.wmbus.build import build_telegram
from gateway.config import MeterConfig, WMBusBusConfig
from gateway.wmbus import WMBusListener
from simulators.wmbus_receiver import next_send

INTERVAL_S = 900.0
INTERVALS = 1000
STOPPED = 200
IDENT = "77000001"
#: A rule: the meter's send times and the listener's check times in, the times of failed polls out.
Rule = Callable[[Sequence[float], Sequence[float]], list[float]]


def old_rule(sends: Sequence[float], checks: Sequence[float]) -> list[float]:
    """The rule before: an interval ends at the first check at or after its start plus the interval,
    holding the telegrams heard until that check; the next begins at that check."""
    return _checked(sends, checks, anchored=False)


def grid_rule(sends: Sequence[float], checks: Sequence[float]) -> list[float]:
    """The next interval begins where the last ended (no drift, no grace)."""
    return _checked(sends, checks, anchored=True)


def _checked(sends: Sequence[float], checks: Sequence[float], anchored: bool) -> list[float]:
    events = sorted([(t, 1) for t in sends] + [(t, 0) for t in checks])
    began: float | None = None
    heard = False
    failed = []
    for at, is_send in events:
        if is_send:
            heard = True
        elif began is None:
            began = at
        elif at >= began + INTERVAL_S:
            if not heard:
                failed.append(at)
            heard = False
            began = began + INTERVAL_S if anchored else at
    return failed


def listener_rule(sends: Sequence[float], checks: Sequence[float]) -> list[float]:
    """The real listener's check, its telegrams handed to it at their send times."""
    now = [0.0]
    failed: list[float] = []

    def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        if not ok:
            failed.append(now[0])

    async def on_reading(reading: Reading) -> None:
        pass

    meter = MeterConfig("FLAT-1", 0, "wmbus", {}, INTERVAL_S, wmbus_id=IDENT)
    bus = WMBusBusConfig("radio", "/dev/null", (meter,), poll_interval_s=INTERVAL_S)
    listener = WMBusListener(bus, on_reading=on_reading, on_heard=on_heard, monotonic=lambda: now[0])
    for n, (at, is_send) in enumerate(sorted([(t, 1) for t in sends] + [(t, 0) for t in checks])):
        now[0] = at
        if is_send:
            asyncio.run(listener.handle(_telegram(n)))
        else:
            listener.check_silence(now=at)
    return failed


def _telegram(n: int) -> bytes:
    records = build_user_data([(DataRecord("volume", "m3", round(10.0 + n / 1000, 3)), "bcd8")])
    return build_telegram(
        records, manufacturer="KAM", id=IDENT, version=1, medium="water", access_no=n % 256, crcs=False
    )


def _sends(rng: random.Random, jitter: bool, until: float) -> list[float]:
    at = rng.uniform(0.0, INTERVAL_S)
    sends = []
    while at < until:
        sends.append(at)
        at = next_send(at, INTERVAL_S, rng) if jitter else at + INTERVAL_S
    return sends


def _checks(rng: random.Random, every_s: float, until: float) -> list[float]:
    """The listener's checks: at its start, then ``every_s`` after each (its pause follows the check),
    up to 10 ms late each time."""
    at, checks = 0.0, []
    while at < until:
        checks.append(at)
        at += every_s + rng.uniform(0.0, 0.01)
    return checks


RULES: dict[str, Rule] = {"old (baseline)": old_rule, "grid": grid_rule, "now": listener_rule}


def main() -> None:
    until = INTERVALS * INTERVAL_S
    print(f"false failed polls of a meter sending every {INTERVAL_S:.0f} s, over {INTERVALS:,} intervals")
    print(f"{'sends':<10} {'checks':<15}" + "".join(f"{name:>16}" for name in RULES))
    for jitter in (False, True):
        for every_s, checks_name in ((INTERVAL_S, "each interval"), (60.0, "each minute")):
            counts = []
            for rule in RULES.values():
                rng = random.Random(7)  # each rule the same sends and checks
                sends, checks = _sends(rng, jitter, until), _checks(rng, every_s, until)
                counts.append(len(rule(sends, checks)))
            sends_name = "simulator" if jitter else "exact"
            print(f"{sends_name:<10} {checks_name:<15}" + "".join(f"{count:>16,}" for count in counts))
    print(f"\n{STOPPED} meters stopping at random (simulator's sends), checks each interval:")
    print("worst delay from the next telegram due to the first failed poll, in intervals (bound: 2, one and a check)")
    for name, rule in RULES.items():
        worst = 0.0
        for trial in range(STOPPED):
            rng = random.Random(1000 + trial)
            stop = rng.uniform(5 * INTERVAL_S, 10 * INTERVAL_S)
            sends = _sends(rng, True, stop)
            checks = _checks(rng, INTERVAL_S, stop + 5 * INTERVAL_S)
            after = [at for at in rule(sends, checks) if at > sends[-1]]
            worst = max(worst, (after[0] - (sends[-1] + INTERVAL_S)) / INTERVAL_S)
        print(f"  {name:<16} {worst:.3f}")


if __name__ == "__main__":
    main()
