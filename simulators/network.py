"""Water lost from a DMA's mains before it reaches any customer meter.

Background leakage is many small leaks that run all the time; it follows pressure, which is highest
at night when demand is low, so the inlet's night flow carries proportionally more of it. A main
burst adds a constant flow from its start until its repair. Neither passes through a customer meter:
only the DMA's inlet (bulk) meter sees them.
"""

from __future__ import annotations

import numpy as np

from simulators.consumption import HOUR_S

#: Leakage flow relative to its daily mean, per hour of day (pressure-driven: higher at night).
_PRESSURE_FACTOR = np.array(
    [
        [1.15, 1.18, 1.2, 1.2, 1.18, 1.1, 1.0, 0.9, 0.85, 0.88, 0.92, 0.95],  # 00-11
        [0.95, 0.95, 0.95, 0.95, 0.93, 0.9, 0.85, 0.85, 0.9, 0.98, 1.05, 1.1],  # 12-23
    ]
).ravel()
PRESSURE_FACTOR = _PRESSURE_FACTOR / _PRESSURE_FACTOR.mean()


def background_leakage_m3(mean_m3h: np.ndarray, step_start_s: np.ndarray, step_s: int) -> np.ndarray:
    """Background leakage (D, T) per step for DMAs whose leakage averages ``mean_m3h``."""
    hour = (step_start_s // HOUR_S) % 24
    return mean_m3h[:, None] * PRESSURE_FACTOR[hour][None, :] * (step_s / HOUR_S)


def constant_flow_m3(
    rate_m3h: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, step_start_s: np.ndarray, step_s: int
) -> np.ndarray:
    """Volume (E, T) that E constant flows ``[start, end)`` put through each step, exactly.

    A flow that starts or ends inside a step contributes only the overlapping part, so the sum over
    steps equals ``rate × duration`` without discretisation error.
    """
    lo = np.maximum(step_start_s[None, :], start_s[:, None])
    hi = np.minimum(step_start_s[None, :] + step_s, end_s[:, None])
    overlap_h = np.clip(hi - lo, 0, None) / HOUR_S
    return rate_m3h[:, None] * overlap_h
