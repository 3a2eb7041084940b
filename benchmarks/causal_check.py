"""Is detection causal on the labelled fleets? Each alert raised again from the data cut at its ``detected_at``.

Issue #6's rule: an alert raised at ``detected_at`` uses only the readings up to then, so the data
cut there (instants after it dropped, :meth:`SeriesBlock.until`) raise it again, of its kind, on its
meter or DMA, at the same ``detected_at``, from a start within an hour. Its figures (rate, volume,
end) may differ: they are measured on less data. So may its kind, where the engine revises it: a
burst that later reads show to be a leak keeps the burst's ``detected_at`` and becomes kind leak
(``engine._bursts_found_to_be_leaks``), and the data cut then raise the burst, as they should; a leak
raised at ``detected_at`` whose rate later reads put at a burst's becomes a burst (``engine._as_burst``),
the data cut then raise the leak. Either counts as raised again (:func:`first_raised_as`: the other
kind, same meter, same ``detected_at``; the revised alert's start is the one found later).
Each alert not raised again is told by what the cut data raised on its meter instead
(:meth:`Violation.cause`): ``start moved`` (the alert at its ``detected_at``, its start more than an
hour off: a start estimate the reads after revise), ``raised earlier`` (raised from the cut data
before its ``detected_at``), ``not raised``. Nor do the data cut an interval earlier raise it
already (at an earlier ``detected_at``, from a start within the hour): ``--earlier`` lists those
too (it doubles the runs). They are leads, not proofs: the last interval of cut data holds
estimates for the customers' reads still missing there, which the reads after replace (seed 2's
small fleet: DMA002's balance at the cut 35 L/h lower), so a step can stand over the bar a read
earlier there.
The engine runs once on the whole fleet; each
alert is then looked for in the engine's run on the cut data of its DMA's meters alone (a DMA's
alerts read its own meters: its inlet's flow, its balance, its customers' registers; checked, each
DMA alone raises what it raised in the fleet), which keeps a check of every alert of a
10,000-meter fleet to a few minutes.

    python -m benchmarks.causal_check --seeds 21-30            # every alert of ten fleets
    python -m benchmarks.causal_check --seeds 27 --kinds dma_burst
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from benchmarks.bench_detection import block_of, labelled_fleet_spec
from benchmarks.reverse_flow_errors import fleet_arguments
from collector.detection.alerts import Alert, AlertKind
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from collector.detection.series import SeriesBlock
from simulators.fleet import generate_fleet

#: How far the start raised from the cut data may be from the whole data's.
START_WITHIN = timedelta(hours=1)


@dataclass(frozen=True)
class Violation:
    """An alert of the whole data and what the data cut at its ``detected_at`` raised in its place."""

    alert: Alert
    again: list[Alert]  # the cut data's alerts of the same kind on the same meter or DMA
    earlier: bool = False  # cut an interval before its detected_at, the data raised it already

    def cause(self) -> str:
        """What the cut data raised in its place: ``start moved``, ``raised earlier`` or ``not raised``
        (``raised already`` for the ``--earlier`` check)."""
        if self.earlier:
            return "raised already"
        if any(b.detected_at == self.alert.detected_at for b in self.again):
            return "start moved"
        return "raised earlier" if self.again else "not raised"

    def line(self) -> str:
        a = self.alert
        where = a.meter_id or a.dma
        seen = "; ".join(f"from {x.start:%m-%d %H:%M} raised {x.detected_at:%m-%d %H:%M}" for x in self.again)
        cut = "cut an interval before, raised already" if self.earlier else "cut then"
        return (
            f"  {a.kind.value} {where} from {a.start:%m-%d %H:%M} raised {a.detected_at:%m-%d %H:%M} "
            f"({a.rate_l_h:.0f} L/h): {self.cause()}: {cut}: {seen or 'nothing'}"
        )


def _same_place(a: Alert, b: Alert) -> bool:
    return a.kind == b.kind and a.meter_id == b.meter_id and a.dma == b.dma


#: The kind an alert may have been first raised as, where the engine revises kinds on later reads.
_REVISED_FROM = {AlertKind.LEAK: AlertKind.BURST, AlertKind.BURST: AlertKind.LEAK}


def first_raised_as(alert: Alert, again: list[Alert]) -> bool:
    """Whether ``again`` holds ``alert`` as first raised before later reads revised its kind: a burst
    later found to be a leak, or a leak later measured at a burst's rate, on the same meter and DMA
    at the same ``detected_at`` (its start is the revised alert's, so it is not compared)."""
    first = _REVISED_FROM.get(alert.kind)
    return any(
        b.kind == first and b.meter_id == alert.meter_id and b.dma == alert.dma and b.detected_at == alert.detected_at
        for b in again
    )


def raised_again(alert: Alert, again: list[Alert]) -> bool:
    """Whether ``again`` (alerts of the data cut at ``alert.detected_at``) holds ``alert``: its kind,
    meter and DMA, its ``detected_at``, its start within ``START_WITHIN``; or its kind as first
    raised (:func:`first_raised_as`)."""
    return first_raised_as(alert, again) or any(
        _same_place(alert, b) and b.detected_at == alert.detected_at and abs(b.start - alert.start) <= START_WITHIN
        for b in again
    )


def _key(a: Alert) -> tuple[object, ...]:
    return (a.kind, a.meter_id, a.dma, a.start, a.detected_at, a.ended_at, round(a.rate_l_h, 6))


def dmas_alone_differ(block: SeriesBlock, alerts: list[Alert], config: DetectionConfig) -> list[str]:
    """The DMAs whose meters alone raise other alerts than they did in the whole ``block``
    (``alerts``): where the check below would not be looking at the alerts it checks."""
    out = []
    for dma in np.unique(block.dma.astype(str)).tolist():
        alone = run_detection(block.take(np.flatnonzero(block.dma == dma)), config).alerts
        if sorted(map(_key, alone)) != sorted(_key(a) for a in alerts if a.dma == dma):
            out.append(dma)
    return out


def raised_earlier(alert: Alert, before: list[Alert]) -> bool:
    """Whether ``before`` (alerts of the data cut before ``alert.detected_at``) hold it already: its
    kind, meter and DMA, its start within ``START_WITHIN``."""
    return any(_same_place(alert, b) and abs(b.start - alert.start) <= START_WITHIN for b in before)


def violations(
    block: SeriesBlock,
    alerts: list[Alert],
    config: DetectionConfig,
    *,
    earlier: bool = False,
    revised: list[Alert] | None = None,
) -> list[Violation]:
    """The ``alerts`` (of the engine's run on the whole ``block``) not raised again from the data
    cut at their ``detected_at`` (their DMA's meters); with ``earlier``, also those the data cut an
    interval before raise already. ``revised`` (if given) collects those raised again only as the
    kind they were first raised as (:func:`first_raised_as`)."""
    out = []
    cache: dict[tuple[str, datetime], list[Alert]] = {}
    step = timedelta(seconds=block.interval_s)

    def cut_at(dma: str, t: datetime) -> list[Alert]:
        if (dma, t) not in cache:
            rows = np.flatnonzero(block.dma == dma)
            cache[dma, t] = run_detection(block.take(rows).until(t), config).alerts
        return cache[dma, t]

    for alert in alerts:
        again = cut_at(alert.dma, alert.detected_at)
        if revised is not None and first_raised_as(alert, again) and not any(_same_place(alert, b) for b in again):
            revised.append(alert)
        if not raised_again(alert, again):
            out.append(Violation(alert, [b for b in again if _same_place(alert, b)]))
        elif earlier and alert.detected_at - step >= block.time(0):
            before = cut_at(alert.dma, alert.detected_at - step)
            if raised_earlier(alert, before):
                out.append(Violation(alert, [b for b in before if _same_place(alert, b)], earlier=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser)
    parser.add_argument("--kinds", default="", help="only these kinds, comma-separated (default: all)")
    parser.add_argument("--earlier", action="store_true", help="also list alerts the data cut before raise already")
    args = parser.parse_args()
    kinds = set(filter(None, args.kinds.split(",")))
    config = DetectionConfig()
    t0 = time.process_time()
    checked = bad = n_revised = 0
    causes: Counter[str] = Counter()
    for seed in args.seeds:
        block = block_of(generate_fleet(labelled_fleet_spec(args.meters, args.days, seed)))
        every = run_detection(block, config).alerts
        apart = dmas_alone_differ(block, every, config)
        if apart:
            print(f"seed {seed}: DMAs alone raise other alerts than in the fleet (not checked): {', '.join(apart)}")
        alerts = [a for a in every if (not kinds or a.kind.value in kinds) and a.dma not in apart]
        revised: list[Alert] = []
        found = violations(block, alerts, config, earlier=args.earlier, revised=revised)
        checked += len(alerts)
        bad += len(found)
        n_revised += len(revised)
        causes.update(v.cause() for v in found)
        n_earlier = sum(v.earlier for v in found)
        print(
            f"seed {seed}: {len(alerts)} alerts, {len(found) - n_earlier} not raised again from the data cut at "
            f"it, {n_earlier} raised already from the data cut an interval before, {len(revised)} raised again "
            "as the kind first raised",
            flush=True,
        )
        for v in found:
            print(v.line(), flush=True)
    by_cause = ", ".join(f"{n} {cause}" for cause, n in sorted(causes.items()))
    print(
        f"{checked} alerts, {bad} not causal ({by_cause or 'none'}), {n_revised} raised again as the kind "
        f"first raised ({time.process_time() - t0:.0f} s CPU)"
    )


if __name__ == "__main__":
    main()
