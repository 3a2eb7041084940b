"""The normalised output shared by every decoder (M-Bus, wireless M-Bus, Modbus profiles).

A decoded frame is its header fields plus a list of :class:`DataRecord`. Units are SI as metering
uses them (``m3``, ``m3/h``, ``kg``, ``Wh``, ``W``, ``degC``, ``K``, ``bar``, ``s``); ``value`` has the
VIF's decimal exponent applied. Apply a negative exponent by dividing by the power of ten
(``raw / 10**3``), never by multiplying with ``1e-3``: the division is correctly rounded, so
``12345678`` litres prints as ``12345.678`` m3.

A date and time (M-Bus types F and I, EN 13757-3 Annex A) is the meter's local wall time, with no
offset; ``summer_time`` is its SU bit, whether the meter was keeping summer time (in the JSON only
for such records, and not when the meter marks the time invalid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Function = Literal["instantaneous", "maximum", "minimum", "error"]
Value = int | float | str | None


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One data record (EN 13757-3 clause 6): a value with what it measures and where it is stored."""

    quantity: str
    unit: str | None
    value: Value
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    function: Function = "instantaneous"
    #: the SU bit of a type F or I date and time; ``None`` for every other record
    summer_time: bool | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "storage": self.storage,
            "tariff": self.tariff,
            "subunit": self.subunit,
            "function": self.function,
            "quantity": self.quantity,
            "unit": self.unit,
            "value": self.value,
        }
        if self.summer_time is not None:
            record["summer_time"] = self.summer_time
        return record
