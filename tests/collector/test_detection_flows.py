"""Interval flows from cumulative registers: the register's resolution."""

from __future__ import annotations

import math
from functools import reduce

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from collector.detection.config import DetectionConfig
from collector.detection.flows import register_step_l


@given(
    step_l=st.sampled_from([0.1, 0.5, 1.0, 2.5, 10.0, 100.0]),
    advances=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=60),
    initial_m3=st.floats(min_value=0.0, max_value=99_999.0),
)
@example(step_l=100.0, advances=[166], initial_m3=0.15)  # a first reading at half a step
def test_the_step_is_the_largest_quantum_every_advance_is_a_whole_number_of(
    step_l: float, advances: list[int], initial_m3: float
) -> None:
    """A register of ``step_l`` litres read as float m³ (with the float noise that brings): its
    step is ``step_l`` times the greatest common divisor of its advances in steps, whatever the
    smallest advance is; with no advance at all, the configured default."""
    # the register shows whole steps from its first reading on (a first reading at half a step
    # with the advances added in floats was rounded one way, and a later one the other)
    steps = np.round(initial_m3 / (step_l / 1000.0)) + np.cumsum([0, *advances])
    register = steps * (step_l / 1000.0)
    delta = np.r_[np.nan, np.diff(register)][None, :]
    expected_steps = reduce(math.gcd, advances)
    got = float(register_step_l(delta, DetectionConfig())[0])
    if expected_steps == 0:
        assert got == DetectionConfig().default_step_m3 * 1000.0
    else:
        assert math.isclose(got, step_l * expected_steps, rel_tol=1e-9)


def test_a_household_s_smallest_draw_is_not_its_register_s_step() -> None:
    """Hours of 6, 7 and 12 litres on a 1-litre register (the smallest advance is 6 L; before, that
    was taken for the step); 20, 30 and 50 on a 10-litre one; missing reads and still hours. (A
    register whose every advance was a multiple of 3 L would read as a 3-litre one: only more reads
    could tell.)"""
    rows = (
        np.array(
            [
                [np.nan, 6, 0, 7, np.nan, 12, 6],
                [np.nan, 20, 30, 0, 50, np.nan, 20],
            ]
        )
        / 1000.0
    )
    assert register_step_l(rows, DetectionConfig()).tolist() == [1.0, 10.0]
