"""A reading's flow as the meters pages write it (server.web.flow): L/h to one decimal, halves away
from zero, and a flow that is not zero never written as if it were."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from server.web.flow import flow_l_h

ONE_DECIMAL = re.compile(r"-?\d+\.\d")
FLOWS = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@given(FLOWS)
def test_every_flow_is_one_decimal_or_words_and_keeps_its_direction(flow: float) -> None:
    shown = flow_l_h(flow)
    if shown in ("under 0.1", "reverse, under 0.1"):
        assert flow != 0 and abs(Decimal(repr(flow)) * 1000) < Decimal("0.05")
        assert (shown == "reverse, under 0.1") == (flow < 0)
        return
    assert ONE_DECIMAL.fullmatch(shown), shown
    exact = Decimal(repr(flow)) * 1000
    assert Decimal(shown) == exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    assert (shown == "0.0") == (flow == 0)  # "0.0" only for no flow at all
    assert shown.startswith("-") == (flow < 0 and shown != "0.0")


def test_the_column_s_mixed_figures_read_alike() -> None:
    """The meters page's column held "0.0", "0.025", "-0.04" (m³/h) side by side."""
    assert [flow_l_h(f) for f in (0.0, 0.025, -0.04, 4e-05, -4e-05, 5e-05, -5e-05)] == [
        "0.0", "25.0", "-40.0", "under 0.1", "reverse, under 0.1", "0.1", "-0.1",
    ]  # fmt: skip
    assert flow_l_h(Decimal("-0.0")) == "0.0" and flow_l_h(float("nan")) == "nan"
