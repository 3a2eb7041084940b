"""A float figure rounded for the page as PostgreSQL rounds it for an enquiry's subject.

An alert's rate is a ``double precision``; its enquiry's subject says ``round(rate::numeric, 1)``.
The page said ``'%.1f' % rate``: the float's exact binary value rounded to even, so 0.25 L/h was
"0.2" on the page and "0.3" in the enquiry, 0.35 (binary 0.34999…) "0.3" and "0.4". PostgreSQL
turns a float8 into numeric through its 15 significant digits (``%.15g``, DBL_DIG: not the shortest
text that reads back, so 0.24999999999999997 is 0.25 there) and rounds numeric ties away from zero;
this does the same, in Decimal.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

_FLOAT8_DIGITS = 15  # DBL_DIG: the digits PostgreSQL's float8 → numeric cast keeps


def rounded(value: float, places: int) -> str:
    """``value`` to ``places`` decimals in plain digits, as ``round(value::numeric, places)::text``."""
    exact = Decimal(f"{value:.{_FLOAT8_DIGITS}g}")
    # quantize needs every digit of the result in its context's precision: 1e20 to 0.1 has 22
    context = Context(prec=max(_FLOAT8_DIGITS, exact.adjusted() + places + 2))
    result = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=context)
    return format(result.copy_abs() if result.is_zero() else result, "f")  # numeric has no "-0.0"
