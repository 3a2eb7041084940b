"""The meters' own alarm bits (leak, burst, tamper, …), passed through as alerts of their own."""

from __future__ import annotations

import numpy as np

from collector.detection.alerts import Alert, AlertKind, AlertSource
from collector.detection.common import Clock, new_alert
from collector.detection.flows import Flows, first_crossings, next_index
from collector.detection.series import SeriesBlock

#: Alarm names that become alerts; ``low_battery`` and the like are maintenance, still worth a ticket.
PASSED_THROUGH = {k.value: k for k in AlertKind if k is not AlertKind.DMA_BURST and k is not AlertKind.STUCK}


def meter_alarm_alerts(block: SeriesBlock, flows: Flows) -> list[Alert]:
    clock = Clock(block.timestamps, block.interval_s)
    t = block.n_intervals
    alerts = []
    for name, bits in block.alarms.items():
        kind = PASSED_THROUGH.get(name)
        if kind is None:
            continue
        bits = np.asarray(bits, dtype=bool)
        rows, cols = first_crossings(bits)
        if rows.size == 0:
            continue
        clear = next_index(~bits)
        for m, j in zip(rows.tolist(), cols.tolist(), strict=True):
            end = int(clear[m, j])
            seg = flows.flow_l_h[m, j:end]
            rate = float(np.nanmean(seg)) if np.any(~np.isnan(seg)) else 0.0
            if kind is AlertKind.REVERSE_FLOW:
                rate = abs(rate)
            start = clock.at(j)
            last_seen = clock.at(end - 1)
            alerts.append(
                new_alert(
                    kind,
                    str(block.meter_ids[m]),
                    str(block.dma[m]),
                    start=start,
                    detected_at=start,
                    last_seen=last_seen,
                    ended_at=clock.at(end) if end < t else None,
                    rate_l_h=max(rate, 0.0),
                    volume_l=max(rate, 0.0) * clock.hours(start, last_seen),
                    confidence=1.0,
                    evidence=((start, last_seen),),
                    source=AlertSource.METER,
                )
            )
    return alerts
