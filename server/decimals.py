"""Decimals as the API sends them: exact, in fixed-point text ("0.0000001", never "1E-7").

psycopg gives a numeric's small values, and arithmetic on them, a Decimal whose ``str`` has an
exponent; a billing system's CSV import, or a client that reads the text as a number, may not
take "1E-7" for a volume.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer


def fixed_point(value: Decimal) -> str:
    return format(value, "f")


#: A Decimal field sent as fixed-point text in JSON.
ExactDecimal = Annotated[Decimal, PlainSerializer(fixed_point, return_type=str, when_used="json")]


#: A litre, in m³: the fewest places a volume is written with.
LITRE_M3 = Decimal("0.001")


def volume_m3(value: Decimal | None) -> Decimal | None:
    """A volume in m³ written with at least 3 places (the litre), as the registers are: a line's
    SQL ``coalesce(…, 0)`` for no estimated water was written ``"0"`` beside ``"7.200"``. Never
    rounded: a volume with more places (an estimate's) keeps them, so the parts still sum exactly."""
    if value is None or value.as_tuple().exponent <= -3:  # type: ignore[operator]
        return value
    return value.quantize(LITRE_M3)
