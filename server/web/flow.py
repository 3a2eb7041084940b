"""A meter's flow as the meters page writes it: litres an hour to one decimal, every row alike.

The API gives a reading's flow in m³/h as the meter sent it, and the page wrote those digits as they
came: "0.0", "0.025", "-0.04" in one column, a reader comparing a leak's 25 L/h with a reverse flow of
40 L/h had to count the decimals. Litres an hour to 0.1 L/h are the alerts' own unit and step ("about
25.0 L/h"). A flow too small for that step is not rounded to "0.0", which reads as no water moving:
"under 0.1", or "reverse, under 0.1" for water going back through the meter (a non-return valve
letting by, a meter fitted backwards), which must not vanish. The exact figure is the cell's title.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

LITRES_PER_M3 = 1000
_STEP = Decimal("0.1")  # L/h


def flow_l_h(flow_m3h: float | Decimal) -> str:
    """``flow_m3h`` in L/h to one decimal, halves away from zero; a flow that is not zero but smaller
    than half a step in words, so it never reads "0.0"; negative (reverse) flows with their minus."""
    exact = flow_m3h if isinstance(flow_m3h, Decimal) else Decimal(repr(flow_m3h))
    if not exact.is_finite():  # a double precision column may hold NaN or Infinity: said as stored
        return str(flow_m3h)
    litres = exact * LITRES_PER_M3
    shown = litres.quantize(_STEP, rounding=ROUND_HALF_UP)
    if shown.is_zero() and not litres.is_zero():
        return "reverse, under 0.1" if litres < 0 else "under 0.1"
    return format(shown.copy_abs() if shown.is_zero() else shown, "f")  # 0 and -0.0 are "0.0"
