"""The meters' own alarm bits (leak, burst, tamper, …), passed through as alerts of their own.

A bit is known only where the meter was read: an interval without a reading says nothing about the
alarm, so the alarm's state carries over it. An alarm ends at the first reading without its bit,
unless the bit comes back within ``DetectionConfig.alarm_hold_off_h`` of it: a flapping bit is one
episode, not an alert per flap. So its end is told only once the data reach that far past it.
"""

from __future__ import annotations

import numpy as np

from collector.detection.alerts import FLOW_KINDS, Alert, AlertKind, AlertSource
from collector.detection.common import Clock, new_alert
from collector.detection.config import DetectionConfig
from collector.detection.flows import Flows, first_crossings, last_index, next_index
from collector.detection.series import SeriesBlock

#: Alarm names that become alerts; ``low_battery`` and the like are maintenance, still worth a ticket.
PASSED_THROUGH = {k.value: k for k in AlertKind if k is not AlertKind.DMA_BURST and k is not AlertKind.STUCK}


def meter_alarm_alerts(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    hold_off_s = config.alarm_hold_off_h * 3600.0
    clock = Clock.of(block)
    t = block.n_intervals
    read = ~np.isnan(block.volume_m3)
    alerts = []
    for name, bits in block.alarms.items():
        kind = PASSED_THROUGH.get(name)
        if kind is None:
            continue
        bits = np.asarray(bits, dtype=bool) & read
        if not bits.any():
            continue
        # the state at each column: the bit of the latest reading at or before it (off before any)
        latest = last_index(read)
        state = np.take_along_axis(bits, np.maximum(latest, 0), axis=1) & (latest >= 0)
        clear = next_index(read & ~bits)  # only a reading without the bit clears the alarm
        last_on = last_index(bits)
        next_on = next_index(bits)
        # the hold-off: an alarm back within it of its clear was never off (columns between the
        # clear after the last reading with the bit and the next reading with it)
        cleared_at = np.take_along_axis(clear, np.maximum(last_on, 0), axis=1)
        back = np.minimum(next_on, t - 1)
        gap_s = clock.seconds[back] - clock.seconds[np.minimum(cleared_at, t - 1)]
        state |= (last_on >= 0) & (next_on < t) & (gap_s < hold_off_s)
        rows, cols = first_crossings(state)
        ends = next_index(~state)  # the clear no reading with the bit followed within the hold-off
        for m, j in zip(rows.tolist(), cols.tolist(), strict=True):
            end = int(ends[m, j])
            last = int(last_on[m, end - 1])  # the latest reading still showing the alarm
            # an end is known once the data reach the hold-off past it: the bit may yet come back
            ended = end < t and clock.seconds[t - 1] - clock.seconds[end] >= hold_off_s
            # only a flow alarm's water is a rate: a tampered, dry or failing meter loses what
            # nothing measures, and its use meanwhile is no loss (0, not the household's use)
            seg = flows.flow_l_h[m, j:end]
            rate = _rate(kind, seg, float(flows.step_flow_l_h[m, 0])) if kind in FLOW_KINDS else 0.0
            start = clock.at(j)
            last_seen = clock.at(last)
            alerts.append(
                new_alert(
                    kind,
                    str(block.meter_ids[m]),
                    str(block.dma[m]),
                    start=start,
                    detected_at=start,
                    last_seen=last_seen,
                    ended_at=clock.at(end) if ended else None,
                    rate_l_h=max(rate, 0.0),
                    volume_l=max(rate, 0.0) * clock.hours(start, last_seen),
                    confidence=1.0,
                    evidence=((start, last_seen),),
                    source=AlertSource.METER,
                )
            )
    return alerts


def _rate(kind: AlertKind, seg: np.ndarray, step_l_h: float) -> float:
    """The flow the alarm is about, over the intervals it was on."""
    known = seg[~np.isnan(seg)]
    if known.size == 0:
        return 0.0
    if kind is AlertKind.REVERSE_FLOW:
        return abs(float(known.mean()))
    if kind is AlertKind.LEAK:
        # a leak is the flow that never stops: the floor under the household's use, not its mean
        low = float(known.min())
        return float(known[known <= low + 1.01 * step_l_h].mean())
    return float(known.mean())
