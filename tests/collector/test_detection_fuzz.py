"""Fuzz: detection on registers that do anything a meter or a bus can make them do."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.detection.engine import detect
from tests.collector.test_detection_households import START, block_of, household

DAYS = 10


@st.composite
def registers(draw: st.DrawFn) -> np.ndarray:
    """(3, T) m³: households' registers with a leak or a burst somewhere, reads missing, steps
    back (a replaced meter, jitter), jumps, a register stuck, a rollover, a coarse register."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t = DAYS * 24 + 1
    uses = np.stack([household(rng, DAYS) for _ in range(3)])
    for row in range(3):
        at = draw(st.integers(0, t - 2))
        uses[row, at:] += draw(st.sampled_from([0.0, 2.0, 30.0, 150.0, 900.0]))
    litres = np.floor(np.cumsum(uses, axis=1))
    regs = np.concatenate([np.zeros((3, 1)), litres], axis=1) / 1000.0 + draw(st.floats(0.0, 99_999.0))
    for _ in range(draw(st.integers(0, 6))):
        row, at = draw(st.integers(0, 2)), draw(st.integers(0, t - 1))
        fault = draw(st.sampled_from(["missing", "back", "jump", "stuck", "reset", "coarse"]))
        if fault == "missing":
            regs[row, at : at + draw(st.integers(1, 30))] = np.nan
        elif fault == "back":
            regs[row, at:] -= draw(st.sampled_from([0.001, 0.05, 3.0]))
        elif fault == "jump":
            regs[row, at:] += draw(st.sampled_from([0.5, 40.0, 5000.0]))
        elif fault == "stuck":
            regs[row, at:] = regs[row, at]
        elif fault == "reset":
            regs[row, at:] -= regs[row, at]
        else:
            regs[row] = np.floor(regs[row] * 100.0) / 100.0  # a 10-litre register
    return np.maximum(regs, 0.0, where=~np.isnan(regs), out=regs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume=registers())
def test_any_registers_give_alerts_with_sane_figures(volume: np.ndarray) -> None:
    """Whatever the registers do, detection returns alerts (no exception), each raised inside the
    data, started no later than it was raised, with a finite non-negative rate and volume."""
    block = block_of({f"M{i}": np.zeros(volume.shape[1] - 1) for i in range(3)}, volume=volume)
    end = START + (volume.shape[1] - 1) * (block.time(1) - block.time(0))
    for alert in detect(block):
        assert START <= alert.detected_at <= end, alert
        assert alert.start <= alert.detected_at, alert
        assert alert.last_seen >= alert.detected_at or alert.ended_at is not None, alert
        assert math.isfinite(alert.rate_l_h) and alert.rate_l_h >= 0, alert
        assert math.isfinite(alert.volume_l) and alert.volume_l >= 0, alert
        assert 0.0 <= alert.confidence <= 1.0, alert
