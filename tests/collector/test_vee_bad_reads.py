"""A register stepping back is a replacement only when it falls far; a glitch read is a bad read.

Before, any backward step to a register of 10 m³ or less was a 'replacement' whose whole new
register counted as use: a young meter stepping back 10 L billed 9.5 m³, and one glitch read of 0
between 1234.5 and 1234.52 m³ billed the register's climb back, 1234 m³.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.rules import validate
from collector.vee.series import Series
from tests.collector.test_vee_rules import NOW, T0


def _series(volume: list[float]) -> Series:
    n = len(volume)
    return Series.from_arrays(
        ["M"],
        np.zeros(n, np.int64),
        T0 + np.arange(n, dtype=np.float64) * 3600.0,
        np.array(volume),
        VeeConfig(),
        flow=np.full(n, np.nan),
    )


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(0.0, 90_000.0),
    per_hour=st.sampled_from([0.0, 0.001, 0.01, 0.05]),
    at=st.integers(1, 10),
    glitch=st.one_of(st.just(0.0), st.floats(0.0, 99_999.0)),
)
def test_one_glitch_read_is_a_bad_read_and_counts_nothing(start, per_hour, at, glitch):
    """Whatever the register and whatever the glitch (0, or any value off the line by more than the
    meter could pass), the intervals add up to the register's true difference and no step is a
    replacement, rollover or unexplained."""
    volume = [round(start + per_hour * h, 3) for h in range(12)]
    off_by = glitch - volume[at - 1]
    if -0.001 <= off_by <= 5.0 * 1.05 + 0.001:  # not off the line: a read the meter could have made
        return
    volume[at] = glitch
    v = validate(_series(volume), VeeConfig(), NOW)
    assert v.step_kind.tolist()[at : at + 2] == ["bad_read", "after_bad_read"]
    assert set(v.step_kind.tolist()) <= {"", "bad_read", "after_bad_read"}
    assert v.masks["bad_read"].tolist() == [i == at for i in range(12)]
    assert not v.masks["over_max_flow"].any()
    assert abs(np.nansum(v.interval_consumption) - (volume[-1] - volume[0])) < 1e-6


@settings(max_examples=100, deadline=None)
@given(young=st.floats(0.0, 19.9), back=st.floats(0.02, 0.5))
def test_a_young_meter_stepping_back_is_no_replacement(young, back):
    """A register under 20 m³ stepping back and staying back: an unexplained backward step (its
    consumption unknown), never a new meter whose whole register is use."""
    volume = [young, young + 0.01, young + 0.01 - back, young + 0.012 - back, young + 0.014 - back]
    v = validate(_series(volume), VeeConfig(), NOW)
    assert v.step_kind.tolist() == ["", "", "unexplained", "", ""]
    assert np.isnan(v.step_consumption[2])


@settings(max_examples=100, deadline=None)
@given(old=st.floats(20.0, 99_000.0), new=st.floats(0.0, 10.0))
def test_a_fall_from_well_above_to_near_zero_that_stays_is_a_replacement(old, new):
    volume = [old, old + 0.01, new, new + 0.01, new + 0.02]
    v = validate(_series(volume), VeeConfig(), NOW)
    assert v.step_kind.tolist() == ["", "", "replacement", "", ""]
    assert v.step_consumption[2] == new
