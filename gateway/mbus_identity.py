"""Which meter answers at a wired M-Bus primary address: its identification checked at every poll.

A primary address (0..250) is a setting of the meter, not the meter: a meter exchanged for a new one
set to the same address, or two meters' addresses swapped by a technician, answer the gateway's
polls as the old one did. Its register was then taken as the configured meter's: a replaced meter's
1,234 m3 followed by the new one's 0 looked like reverse flow or a huge step back, an invented
reading. Every long answer carries the meter's 8-digit identification (EN 13757-3, its data header),
so each answer's is checked against the meter's configured ``identification``, else the one its first
answer carried, remembered in the spool (gateway.meter_identity, which says why a meter exchanged
while the gateway was down is refused too, and how a new meter is taken).

An answer from another meter is refused for that poll (:class:`IdentificationMismatch`, a
:class:`PollRefused`: not retried within the poll, a single exchange where the bus's ``retries``
each made another; said once an episode by the scheduler, in the meter's health ``last_error``),
its words saying which identification answered, which was expected, at which address, and what to
do. A meter read by secondary address is selected by its identification, and checked against it
(gateway.mbus).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from aquami.contracts.reads import utc_iso
from gateway.config import MeterConfig
from gateway.meter_identity import IDENTIFICATION, MeterIdentities
from gateway.transport import PollRefused


class IdentificationMismatch(PollRefused):
    """A meter on a primary address answered with another identification than expected: not retried
    within the poll (the same meter answers at that address however often it is asked)."""


def expected_identification(identities: MeterIdentities, meter: MeterConfig) -> str | None:
    """The identification ``meter``'s answers must carry: its configured one, else its first
    answer's, else None (no answer yet: the next one is taken, and remembered)."""
    return identities.expected(meter.meter_id, meter.identification, IDENTIFICATION)


def check_identification(
    identities: MeterIdentities, meter: MeterConfig, telegram: dict[str, Any], at: datetime, bus: Iterable[MeterConfig]
) -> None:
    """Refuse ``telegram``, an answer at ``meter``'s primary address, if another meter sent it;
    remember its identification if it is ``meter``'s first answer (or the configured one, so a pin
    taken out later still expects the meter checked). ``bus``: the bus's meters, to name the one the
    identification that answered belongs to, if it is one of them."""
    sent = telegram.get("id")
    if not isinstance(sent, str):
        if meter.identification is not None:
            raise IdentificationMismatch(
                f"its answer at primary address {meter.unit_id} carries no identification to check against "
                f"identification = {meter.identification!r} (a short-header telegram): its reading is not taken; "
                "take identification out of this meter's configuration if it never sends one"
            )
        return
    expected = identities.take(meter.meter_id, sent, meter.identification, at, IDENTIFICATION)
    if expected is not None:
        raise IdentificationMismatch(_mismatch(identities, meter, sent, expected, bus))


def _mismatch(
    identities: MeterIdentities, meter: MeterConfig, sent: str, expected: str, bus: Iterable[MeterConfig]
) -> str:
    address = meter.unit_id
    came = f"at primary address {address} the meter with identification {sent} answered, not {expected}"
    if meter.identification is not None:
        came += ", the identification this meter is configured with"
    else:
        first = identities.first(meter.meter_id)
        assert first is not None  # (expected came from it)
        came += f", the identification of this meter's first answer, at {utc_iso(first.at)}"
    came += f"{_whose(identities, meter, sent, bus)}: its reading is not taken. "
    came += "A meter exchanged, or addresses set anew by a technician? "
    came += "`aquami gateway scan` lists the bus's meters by identification; "
    if meter.identification is not None:
        return came + (
            f"then set this meter's address to where {expected} answers, or, for a new meter, "
            f'identification = "{sent}", and reload'
        )
    return came + (
        f'once the meter at primary address {address} is checked, pin it: identification = "{sent}" in this '
        "meter's configuration (or set its address to where its own meter answers), and reload"
    )


def _whose(identities: MeterIdentities, meter: MeterConfig, sent: str, bus: Iterable[MeterConfig]) -> str:
    """`` (22222222 is HOUSE-6's, at primary address 6)``, if another meter of the bus is known by ``sent``."""
    for other in bus:
        if other.meter_id == meter.meter_id:
            continue
        if other.secondary_address == sent:
            return f" ({sent} is {other.meter_id}'s, read by secondary address)"
        if other.secondary_address is None and expected_identification(identities, other) == sent:
            return f" ({sent} is {other.meter_id}'s, at primary address {other.unit_id})"
    return ""
