"""An event as JSON: the bytes the spool stores and the broker gets, and each value as the gateway's
log line says it.

An event's values are JSON's own (strings, integers, null, lists, objects), and two of the project's
types have a spelling: a ``Decimal`` (a volume, money) as its plain digits in a string (``"1.50"``,
``"100"``), never a float's rounding nor an exponent (``"1E+2"``, which a utility's tools
may take for text, not a number); a timezone-aware ``datetime`` as ISO 8601 UTC (``utc_iso``). Anything else has no
JSON form (bytes from a decoded frame, a set, a naive datetime, NaN, which ``json`` would write as
``NaN``, no JSON at all): :class:`EventNotJson` names the event, the field and why, so the gateway can
say the event in its log and count it lost instead of raising into the poll or the spool's writer that
emitted it. Before, an event's log line was made before anything could catch its error: a ``TypeError``
went up through the poll's callback, the bus's loop or the writer that had raised the event.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from aquami.contracts.reads import utc_iso

#: A ``Decimal`` whose first digit stands more than this many places from the decimal point (beyond
#: 10**1000, below 10**-1000) is refused: no meter's or bill's value is, and its plain digits would be
#: a string that long (``Decimal("1E+999999999")``: a gigabyte, where ``str`` wrote 12 characters).
PLAIN_PLACES_MAX = 1000


class EventNotJson(ValueError):
    """An event holding a value with no JSON form; the message names the event, its field and why:
    :attr:`kind` (the event's name, ``meter_offline``) and :attr:`why` (its field and why)."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(f"event {kind}: {why}")
        self.kind = kind
        self.why = why


def json_form(value: object) -> object:
    """``json.dumps``'s ``default``: a ``Decimal`` or an aware ``datetime`` as a string; else refused."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"Decimal {value} is no number JSON can write")
        if abs(value.adjusted()) > PLAIN_PLACES_MAX:
            raise ValueError(
                f"Decimal {value} is too large or too small to write in plain digits "
                f"(its first digit more than {PLAIN_PLACES_MAX} places from the point)"
            )
        return format(value, "f")  # its digits, exactly, no exponent ("12.340"; "1E+2": "100"): no float's rounding
    if isinstance(value, datetime):
        return utc_iso(value)  # a naive one refused: never UTC by accident
    raise TypeError(f"{type(value).__name__} has no JSON form")


def value_json(value: object, **options: Any) -> str:
    """``value`` as JSON (``options``: ``json.dumps``'s); raises ``TypeError``, ``ValueError``
    (``RecursionError``: nested too deep) for a value with no JSON form."""
    return json.dumps(value, allow_nan=False, default=json_form, **options)


def event_json(event: dict[str, Any]) -> bytes:
    """``event`` as the spool stores it; :class:`EventNotJson` if a value has no JSON form."""
    try:
        return value_json(event, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as error:
        raise EventNotJson(str(event.get("event")), _why_not(event, error)) from error


def logged_value(value: object) -> str:
    """``value`` as an event's log line says it: its JSON, or its ``repr`` if it has none (the log
    line must say the event whatever it holds: it is all that is left of one that cannot be stored)."""
    try:
        return value_json(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _why_not(event: dict[str, Any], error: BaseException) -> str:
    """The first field whose value has no JSON form, and why; else the whole event's error (a field's
    name that is no string)."""
    for key, value in event.items():
        try:
            value_json(value)
        except (TypeError, ValueError, RecursionError) as why:
            return f"field {key}={logged_value(value)}: {why}"
    return str(error)
