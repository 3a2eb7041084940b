"""Which meter answers at a wired M-Bus primary address: its identification checked at every poll.

A primary address (0..250) is a setting of the meter, not the meter: a meter exchanged for a new one
set to the same address, or two meters' addresses swapped by a technician, answer the gateway's
polls as the old one did. Its register was then taken as the configured meter's: a replaced meter's
1,234 m3 followed by the new one's 0 looked like reverse flow or a huge step back, an invented
reading. Every long answer carries the meter's 8-digit identification (EN 13757-3, its data header),
so each answer's is checked:

- against the meter's configured ``identification``, if it has one;
- else against the identification its first answer carried, remembered then, and kept in the
  spool's database (:class:`IdentityStore`): a reload (the gateway's :class:`MeterIdentities`
  outlives its buses) and a restart keep it. A meter exchanged while the gateway was down, or in the
  moment of a reload, is refused as one exchanged while it runs: were the first answer after a
  restart trusted, the new meter's register would be stored as the old one's, a step back no one
  asked for. A new meter is taken once the configuration says which it is: its ``identification``
  (which also becomes the one remembered), or a ``meter_id`` of its own (a new meter: nothing
  remembered for it).

An answer from another meter is refused for that poll (:class:`IdentificationMismatch`, a
:class:`PollRefused`: not retried within the poll, a single exchange where the bus's ``retries``
each made another; said once an episode by the scheduler, in the meter's health ``last_error``),
its words saying which identification answered, which was expected, at which address, and what to
do. A meter read by secondary address is selected by its identification, and checked against it
(gateway.mbus).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aquami.contracts.reads import utc_iso
from gateway.config import MeterConfig
from gateway.transport import PollError, PollRefused

log = logging.getLogger(__name__)


class IdentificationMismatch(PollRefused):
    """A meter on a primary address answered with another identification than expected: not retried
    within the poll (the same meter answers at that address however often it is asked)."""


@dataclass(frozen=True, slots=True)
class FirstAnswer:
    """The identification a meter's first answer of this run carried, and when it came (UTC)."""

    identification: str
    at: datetime


class IdentityStore(Protocol):
    """Where the first answers' identifications outlive a restart (the spool's database)."""

    def load_mbus_identity(self, meter_id: str) -> tuple[str, str] | None: ...

    def save_mbus_identity(self, meter_id: str, identification: str, first_at: str) -> None: ...


class MeterIdentities:
    """The identification each meter on a primary address answered with first (by meter id), kept in
    ``store`` if one is given."""

    def __init__(self, store: IdentityStore | None = None) -> None:
        self.store = store
        self._first: dict[str, FirstAnswer | None] = {}  # (None: none stored)

    def first(self, meter_id: str) -> FirstAnswer | None:
        """``meter_id``'s first answer's identification, if it has answered (in this run, or before).
        A store that cannot be read fails the poll (a :class:`PollError`, said once an episode):
        taking the answer then would trust whichever meter answers."""
        if meter_id not in self._first:
            try:
                stored = None if self.store is None else self.store.load_mbus_identity(meter_id)
                first = None if stored is None else FirstAnswer(stored[0], datetime.fromisoformat(stored[1]))
            except Exception as error:  # the spool's own failure (said by it too), or a row spoilt
                raise PollError(
                    f"the identification of its first answer cannot be read from the spool ({error}): "
                    "its answer is not taken unchecked"
                ) from error
            self._first[meter_id] = first
        return self._first[meter_id]

    def _remember(self, meter_id: str, identification: str, at: datetime) -> None:
        """Kept in memory, and in the store: one that fails is said, the reading taken all the same
        (this run still checks the meter; after a restart its next answer is trusted)."""
        self._first[meter_id] = FirstAnswer(identification, at)
        if self.store is None:
            return
        try:
            self.store.save_mbus_identity(meter_id, identification, utc_iso(at))
        except Exception as error:  # the spool's own failure, said by it too
            log.warning(
                "%s: its identification %s is checked until the gateway stops, but cannot be kept in the spool "
                "for after a restart: %s",
                meter_id, identification, error,
            )  # fmt: skip

    def expected(self, meter: MeterConfig) -> str | None:
        """The identification ``meter``'s answers must carry: its configured one, else its first
        answer's, else None (no answer yet: the next one is taken, and remembered)."""
        if meter.identification is not None:
            return meter.identification
        first = self.first(meter.meter_id)
        return None if first is None else first.identification

    def check(self, meter: MeterConfig, telegram: dict[str, Any], at: datetime, bus: Iterable[MeterConfig]) -> None:
        """Refuse ``telegram``, an answer at ``meter``'s primary address, if another meter sent it;
        remember its identification if it is ``meter``'s first answer (or the configured one, so a
        pin taken out later still expects the meter checked). ``bus``: the bus's meters, to name the
        one the identification that answered belongs to, if it is one of them."""
        sent = telegram.get("id")
        expected = self.expected(meter)
        if not isinstance(sent, str):
            if meter.identification is not None:
                raise IdentificationMismatch(
                    f"its answer at primary address {meter.unit_id} carries no identification to check against "
                    f"identification = {meter.identification!r} (a short-header telegram): its reading is not taken; "
                    "take identification out of this meter's configuration if it never sends one"
                )
            return
        if expected is None or sent == expected:
            first = self.first(meter.meter_id)
            if first is None or first.identification != sent:
                self._remember(meter.meter_id, sent, at)
            return
        raise IdentificationMismatch(self._mismatch(meter, sent, expected, bus))

    def _mismatch(self, meter: MeterConfig, sent: str, expected: str, bus: Iterable[MeterConfig]) -> str:
        address = meter.unit_id
        came = f"at primary address {address} the meter with identification {sent} answered, not {expected}"
        if meter.identification is not None:
            came += ", the identification this meter is configured with"
        else:
            first = self.first(meter.meter_id)
            assert first is not None  # (expected came from it)
            came += f", the identification of this meter's first answer, at {utc_iso(first.at)}"
        came += f"{self._whose(meter, sent, bus)}: its reading is not taken. "
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

    def _whose(self, meter: MeterConfig, sent: str, bus: Iterable[MeterConfig]) -> str:
        """`` (22222222 is HOUSE-6's, at primary address 6)``, if another meter of the bus is known by ``sent``."""
        for other in bus:
            if other.meter_id == meter.meter_id:
                continue
            if other.secondary_address == sent:
                return f" ({sent} is {other.meter_id}'s, read by secondary address)"
            if other.secondary_address is None and self.expected(other) == sent:
                return f" ({sent} is {other.meter_id}'s, at primary address {other.unit_id})"
        return ""
