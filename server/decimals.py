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
