"""Which meter answers at an address: the identity its first answer carried, remembered.

An address on a bus (a wired M-Bus primary address, a Modbus unit id) is a setting of the meter, not
the meter: a meter exchanged for a new one set to the same address, or two meters' addresses swapped
by a technician, answer the gateway's polls as the old one did, and their registers were stored as
the configured meter's (a step back, reverse flow, another customer's water). Where an answer
carries the meter's own identity (an M-Bus identification, a Modbus meter's serial number register),
it is checked at each poll:

- against the identity configured for the meter, if it has one;
- else against the one its first answer carried, remembered then, and kept in the spool's database
  (:class:`IdentityStore`, one row per meter id whatever its protocol): a reload (the gateway's
  :class:`MeterIdentities` outlives its buses) and a restart keep it. A meter exchanged while the
  gateway was down, or in the moment of a reload, is refused as one exchanged while it runs: were the
  first answer after a restart trusted, the new meter's register would be stored as the old one's, a
  step back no one asked for. A new meter is taken once the configuration says which it is: its
  identity (which also becomes the one remembered), or a ``meter_id`` of its own.

What is checked, and the words of a refusal, are each protocol's: gateway.mbus_identity (an M-Bus
telegram's identification), gateway.modbus_identity (a Modbus meter's serial number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aquami.contracts.reads import utc_iso
from gateway.transport import PollError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FirstAnswer:
    """The identity a meter's first answer carried, and when it came (UTC)."""

    identification: str
    at: datetime


class IdentityStore(Protocol):
    """Where the first answers' identities outlive a restart (the spool's database)."""

    def load_identity(self, meter_id: str) -> tuple[str, str] | None: ...

    def save_identity(self, meter_id: str, identification: str, first_at: str) -> None: ...


class MeterIdentities:
    """The identity each meter answered with first (by meter id), kept in ``store`` if one is given.
    One for the gateway, whatever the meters' protocols: a meter id is one meter."""

    def __init__(self, store: IdentityStore | None = None) -> None:
        self.store = store
        self._first: dict[str, FirstAnswer | None] = {}  # (None: none stored)

    def first(self, meter_id: str) -> FirstAnswer | None:
        """``meter_id``'s first answer's identity, if it has answered (in this run, or before). A
        store that cannot be read fails the poll (a :class:`PollError`, said once an episode): taking
        the answer then would trust whichever meter answers."""
        if meter_id not in self._first:
            try:
                stored = None if self.store is None else self.store.load_identity(meter_id)
                first = None if stored is None else FirstAnswer(stored[0], datetime.fromisoformat(stored[1]))
            except Exception as error:  # the spool's own failure (said by it too), or a row spoilt
                raise PollError(
                    f"the identification of its first answer cannot be read from the spool ({error}): "
                    "its answer is not taken unchecked"
                ) from error
            self._first[meter_id] = first
        return self._first[meter_id]

    def expected(self, meter_id: str, configured: str | None) -> str | None:
        """The identity ``meter_id``'s answers must carry: ``configured``, else its first answer's,
        else None (no answer yet: the next one is taken, and remembered)."""
        if configured is not None:
            return configured
        first = self.first(meter_id)
        return None if first is None else first.identification

    def take(self, meter_id: str, sent: str, configured: str | None, at: datetime, what: str) -> str | None:
        """None if ``sent`` is ``meter_id``'s identity (remembered if it is the first answer, or the
        configured one: a pin taken out later still expects the meter checked), else the identity
        expected. ``what`` names it in a warning (``identification``, ``serial number``)."""
        expected = self.expected(meter_id, configured)
        if expected is not None and sent != expected:
            return expected
        first = self.first(meter_id)
        if first is None or first.identification != sent:
            self._remember(meter_id, sent, at, what)
        return None

    def _remember(self, meter_id: str, identification: str, at: datetime, what: str) -> None:
        """Kept in memory, and in the store: one that fails is said, the reading taken all the same
        (this run still checks the meter; after a restart its next answer is trusted)."""
        self._first[meter_id] = FirstAnswer(identification, at)
        if self.store is None:
            return
        try:
            self.store.save_identity(meter_id, identification, utc_iso(at))
        except Exception as error:  # the spool's own failure, said by it too
            log.warning(
                "%s: its %s %s is checked until the gateway stops, but cannot be kept in the spool "
                "for after a restart: %s",
                meter_id, what, identification, error,
            )  # fmt: skip

    async def read_ahead(self, meter_ids: Iterable[str]) -> dict[str, FirstAnswer]:
        """The first answer of each of ``meter_ids`` that has one, those not known here yet read from
        the store at once, in a thread. Before, a scan command read them one by one on the event loop
        (:meth:`first`), which SQLite's reads block, and with it the gateway's MQTT keepalives and
        every bus's polls. A read is kept as :meth:`first` keeps it (one remembered meanwhile by a
        poll wins); one that cannot be read is left out (its store says why: a scan does without it)."""
        wanted = list(dict.fromkeys(meter_ids))
        unknown = [meter_id for meter_id in wanted if meter_id not in self._first]
        if unknown and self.store is not None:
            for meter_id, first in (await asyncio.to_thread(_read, self.store, unknown)).items():
                self._first.setdefault(meter_id, first)
        return {meter_id: first for meter_id in wanted if (first := self._first.get(meter_id)) is not None}


def _read(store: IdentityStore, meter_ids: list[str]) -> dict[str, FirstAnswer | None]:
    """Each of ``meter_ids``' first answer that ``store`` can give (None: none stored), through a
    :class:`MeterIdentities` of the thread's own: nothing the event loop uses is touched from it."""
    own = MeterIdentities(store)
    read: dict[str, FirstAnswer | None] = {}
    for meter_id in meter_ids:
        with contextlib.suppress(PollError):  # (the store's failure: said by it)
            read[meter_id] = own.first(meter_id)
    return read
