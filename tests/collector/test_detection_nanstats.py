"""The warning-free NaN statistics detection uses in its threads: numpy's own values, NaN where a
slice has no value, and no warning (see ``collector.detection.common``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from collector.detection.common import nan_mean, nan_median, nan_percentile

values = st.one_of(st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 5)), elements=values))
def test_nan_mean_is_numpy_s_to_the_bit_and_nan_where_no_value(x: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(x, axis=(1, 2))
    warnings.simplefilter("error")  # inside pytest's own per-test filters
    np.testing.assert_array_equal(nan_mean(x, axis=(1, 2)), expected)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(0, 9), elements=values), st.floats(0, 100))
def test_nan_median_and_percentile_are_numpy_s_and_nan_where_no_value(x: np.ndarray, q: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median, percentile = np.nanmedian(x), np.nanpercentile(x, q)
    warnings.simplefilter("error")
    np.testing.assert_array_equal(nan_median(x), median)
    np.testing.assert_array_equal(nan_percentile(x, q), percentile)
