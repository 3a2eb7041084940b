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

The identity remembered is kept with its kind (``identification``, ``serial number``): an M-Bus
identification and a Modbus serial number are different numbers, never compared. A meter id moved
from one protocol to the other has its remembered identity of the other kind set aside (said once),
and its first answer of the new kind taken afresh. Before, it was compared as any other, and every
poll of the moved meter refused until its identity was configured. A row of an earlier version has
no kind: its kind is the one its shape proves (:func:`kind_of`: a value no M-Bus identification can
be is a Modbus serial number, one no Modbus serial number can be an M-Bus identification), and it is
set aside as any identity of the other kind; a value either can be (8 decimal digits, the first not
0) is compared as before, a meter id moved with it refused until its identity is configured (setting
it aside could take another meter's answer where it was this meter's). Any such row is given its kind
the first time an answer matches it. Before, every kind-less row was compared: a meter id moved with
one was refused until its identity was configured, though no answer could ever match it.

One :class:`MeterIdentities` is used from several threads at once: each Modbus and M-Bus poll's
check runs in a worker thread (gateway.modbus_transport, gateway.mbus), and the event loop reads it
too (:meth:`MeterIdentities.read_ahead` for a scan command). Before, it held no lock, and was safe
only because each meter is polled by one bus: a read of the store that came back after another
thread had remembered the meter's first answer put its older "none" back over it, and the next
answer, another meter's, was taken as the first. Now its state is behind one lock, held for a look-up
or a change only, never across the store's reads and writes (the event loop takes it), and a take,
its read, comparison and write, is one step per meter (a lock of the meter's own): of two answers
checked at once for one meter, one is taken first and the other checked against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aquami.contracts.reads import utc_iso
from gateway.transport import PollError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FirstAnswer:
    """The identity a meter's first answer carried, and when it came (UTC); ``kind`` what it is
    (``identification``, ``serial number``), None for an earlier version's row (not said)."""

    identification: str
    at: datetime
    kind: str | None = None


#: the kinds of identity (:attr:`FirstAnswer.kind`): a wired M-Bus meter's, a Modbus meter's
IDENTIFICATION = "identification"
SERIAL_NUMBER = "serial number"
#: the protocol each kind of identity is read by, to say which one a meter moved from
PROTOCOL_OF = {IDENTIFICATION: "M-Bus", SERIAL_NUMBER: "Modbus"}
#: the digits of an M-Bus identification, as a telegram carries it (upper case)
_HEX_DIGITS = frozenset("0123456789ABCDEF")


def kind_of(first: FirstAnswer) -> str | None:
    """``first``'s kind: the one kept, else (an earlier version's row) the one its identity's shape
    proves, else None (either: compared as any). An M-Bus identification is as the telegram carries
    it, 8 hex digits, upper case (8 BCD digits, A-F kept for a wildcard or a broken meter:
    firmware_protocols.mbus.header); a Modbus serial number is an unsigned integer's decimal digits,
    without a leading 0 (firmware_protocols.modbus.profile; "0" too, remembered by an earlier version
    for a serial number never set). So a value that is not 8 hex digits is a serial number, and one of
    8 with a letter or a leading 0 an identification."""
    if first.kind is not None:
        return first.kind
    value = first.identification
    if len(value) != 8 or any(c not in _HEX_DIGITS for c in value):
        return SERIAL_NUMBER
    if value[0] == "0" or not value.isdigit():
        return IDENTIFICATION
    return None


class IdentityStore(Protocol):
    """Where the first answers' identities outlive a restart (the spool's database)."""

    def load_identity(self, meter_id: str) -> tuple[str, str, str | None] | None:
        """The identity, its first answer's time (ISO 8601) and its kind (None: an earlier version's
        row), or None: none remembered."""
        ...

    def save_identity(self, meter_id: str, identification: str, first_at: str, kind: str | None = None) -> None: ...


class MeterIdentities:
    """The identity each meter answered with first (by meter id), kept in ``store`` if one is given.
    One for the gateway, whatever the meters' protocols: a meter id is one meter."""

    def __init__(self, store: IdentityStore | None = None) -> None:
        self.store = store
        self._first: dict[str, FirstAnswer | None] = {}  # (None: none stored)
        self._said: set[tuple[str, ...]] = set()  # what was said once about a meter (:meth:`once`)
        #: each meter's lock, held across a take (a read, a comparison, a write of the store)
        self._taking: dict[str, threading.RLock] = {}
        #: guards the three above: held for a look-up or a change, never across the store's reads and
        #: writes, so that the event loop's short holds never wait on an SD card
        self._lock = threading.Lock()

    def first(self, meter_id: str) -> FirstAnswer | None:
        """``meter_id``'s first answer's identity, if it has answered (in this run, or before). A
        store that cannot be read fails the poll (a :class:`PollError`, said once an episode): taking
        the answer then would trust whichever meter answers."""
        with self._lock:
            if meter_id in self._first:
                return self._first[meter_id]
        try:
            stored = None if self.store is None else self.store.load_identity(meter_id)
            first = None if stored is None else FirstAnswer(stored[0], datetime.fromisoformat(stored[1]), stored[2])
        except Exception as error:  # the spool's own failure (said by it too), or a row spoilt
            raise PollError(
                f"the identification of its first answer cannot be read from the spool ({error}): "
                "its answer is not taken unchecked"
            ) from error
        with self._lock:  # one remembered or set aside meanwhile, by another thread, is newer than this read
            return self._first.setdefault(meter_id, first)

    def expected(self, meter_id: str, configured: str | None, what: str | None = None) -> str | None:
        """The identity ``meter_id``'s answers must carry: ``configured``, else its first answer's
        (of the kind ``what``, if given: an identity of another kind is none), else None (no answer
        yet: the next one is taken, and remembered)."""
        if configured is not None:
            return configured
        first = self.first(meter_id)
        if first is None or (what is not None and kind_of(first) not in (None, what)):
            return None
        return first.identification

    def take(self, meter_id: str, sent: str, configured: str | None, at: datetime, what: str) -> str | None:
        """None if ``sent`` is ``meter_id``'s identity (remembered if it is the first answer, or the
        configured one: a pin taken out later still expects the meter checked), else the identity
        expected. ``what`` is its kind, and names it in a warning (``identification``, ``serial
        number``): a remembered identity of another kind is set aside (said once), not compared.
        One step for the meter: another thread's take of it waits for this one's to end."""
        with self._meter_lock(meter_id):
            first = self.first(meter_id)
            if first is not None and (kind := kind_of(first)) not in (None, what):
                self._set_aside_as_moved(meter_id, first, kind, what)
                first = None
            expected = self.expected(meter_id, configured, what)
            if expected is not None and sent != expected:
                return expected
            if first is None or first.identification != sent:
                self._remember(meter_id, sent, at, what)
            elif first.kind is None:  # an earlier version's row: given its kind, its first answer's time kept
                self._remember(meter_id, sent, first.at, what)
            return None

    def known(self, meter_id: str, sent: str, configured: str | None, what: str) -> bool:
        """True if :meth:`take` would take ``sent`` from memory alone, reading and writing nothing:
        ``meter_id``'s identity known in this run is ``sent``, of the kind ``what`` (not an earlier
        version's row, given its kind when taken), and ``configured`` is none or ``sent`` (a configured
        identity other than the one remembered is remembered in its place when it answers). False
        says nothing: the answer is :meth:`take`'s to check. Holds no lock but the short one: the event
        loop asks it, so that a known meter's poll takes no thread for its check."""
        with self._lock:
            first = self._first.get(meter_id)
        return first is not None and first.kind == what and first.identification == sent and configured in (None, sent)

    def set_aside(self, meter_id: str, seen: FirstAnswer) -> None:
        """``meter_id``'s remembered identity ``seen`` no longer expected in this run (one that is no
        identity: a Modbus serial number never set, remembered by an earlier version); the next answer
        that carries one is taken, and remembered in its place. Only ``seen``: one another thread has
        remembered since it was looked at is kept."""
        with self._meter_lock(meter_id), self._lock:
            if self._first.get(meter_id) is seen:
                self._first[meter_id] = None

    def once(self, meter_id: str, *about: str) -> bool:
        """True the first time it is asked for ``meter_id`` and ``about`` in this gateway's run (a
        reload keeps it): what is said of a meter once, not at every poll."""
        key = (meter_id, *about)
        with self._lock:
            if key in self._said:
                return False
            self._said.add(key)
            return True

    def _meter_lock(self, meter_id: str) -> threading.RLock:
        """``meter_id``'s own lock (re-entered by a take's own steps)."""
        with self._lock:
            return self._taking.setdefault(meter_id, threading.RLock())

    def _set_aside_as_moved(self, meter_id: str, first: FirstAnswer, kind: str, what: str) -> None:
        """``first``, of the kind ``kind`` (kept, or told by its shape), is not ``what``: said once."""
        if self.once(meter_id, "moved", kind, first.identification, what):
            log.warning(
                "%s: its remembered %s %s %s (its first answer's, at %s) is set aside: the meter is now read by "
                "%s, whose %s cannot be compared with it; its %s is checked from now on (its configured one, "
                "else its first %s answer's, remembered then)",
                meter_id, PROTOCOL_OF.get(kind, ""), kind, first.identification, utc_iso(first.at),
                PROTOCOL_OF.get(what, ""), what, what, PROTOCOL_OF.get(what, ""),
            )  # fmt: skip

    def _remember(self, meter_id: str, identification: str, at: datetime, what: str) -> None:
        """Kept in memory, and in the store: one that fails is said, the reading taken all the same
        (this run still checks the meter; after a restart its next answer is trusted)."""
        with self._lock:
            self._first[meter_id] = FirstAnswer(identification, at, what)
        if self.store is None:
            return
        try:
            self.store.save_identity(meter_id, identification, utc_iso(at), what)
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
        with self._lock:
            unknown = [meter_id for meter_id in wanted if meter_id not in self._first]
        if unknown and self.store is not None:
            read = await asyncio.to_thread(_read, self.store, unknown)
            with self._lock:
                for meter_id, first in read.items():
                    self._first.setdefault(meter_id, first)
        with self._lock:
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
