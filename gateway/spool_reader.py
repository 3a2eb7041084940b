"""The first answers' identities a gateway remembers, read from its spool by another process (``aquami
gateway scan``), read-only.

A meter configured without its serial number (an M-Bus meter without its identification) is known by
the one its first answer carried, kept in the spool (gateway.meter_identity). The spool is the running
gateway's (gateway.spool: one process opens it, under its lock), and before, ``gateway scan`` did not
read it: a swap or an exchange of such meters was not named by the command line's scan, while the MQTT
``scan`` command, run inside the gateway, named it.

SQLite is opened ``mode=ro`` (a URI), without the gateway's lock: the file is never created (a spool
not there has nothing to read, and a scan says nothing of it) nor written, and in WAL mode a reader
takes a snapshot, no lock that stops the gateway writing. A spool no gateway has open gets empty
``-wal`` and ``-shm`` files from the read (SQLite's own, with the spool's owner and mode), which the
gateway's next open takes as its own. A spool that cannot be read is said, with why: its meters not
pinned are known by nothing in that scan.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.meter_identity import FirstAnswer, MeterIdentities
from gateway.transport import PollError

#: (gateway.spool's table) a spool of an earlier version, not yet opened by a gateway that adds the
#: ``kind`` column (not here: the file is read only), has rows with no kind
_ROWS = "SELECT identification, first_at, {kind} FROM mbus_identities WHERE meter_id = ?"


class ReadOnlyIdentities:
    """A :class:`~gateway.meter_identity.IdentityStore` over a spool opened read-only: it loads, and
    refuses to save (the spool is the gateway's to write)."""

    def __init__(self, spool: Path) -> None:
        """sqlite3.Error or OSError where ``spool`` cannot be opened, or is not a spool."""
        self.spool = spool
        self._db = sqlite3.connect(f"{spool.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            # (SQLite opens the file lazily: its faults are said now)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(mbus_identities)")}
            self._rows = _ROWS.format(kind="kind" if "kind" in columns else "NULL")
            self._db.execute(self._rows, ("",)).fetchone()
        except BaseException:
            self._db.close()
            raise

    def load_identity(self, meter_id: str) -> tuple[str, str, str | None] | None:
        row = self._db.execute(self._rows, (meter_id,)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), None if row[2] is None else str(row[2]))

    def save_identity(self, meter_id: str, identification: str, first_at: str, kind: str | None = None) -> None:
        raise PermissionError(f"{self.spool} is read here, not written: it is the gateway's")

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Remembered:
    """What a spool remembers of some meters: each one's first answer's identity, with its kind (by
    meter id, those it has), and the meters it could not be read for, with why (the first reason)."""

    identities: dict[str, FirstAnswer] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)
    why: str | None = None


def remembered_in_spool(spool: Path, meter_ids: Iterable[str]) -> Remembered:
    """What the spool at ``spool`` remembers of ``meter_ids``; nothing, and nothing unread, if there
    is no spool there."""
    wanted = list(meter_ids)
    if not wanted or not spool.exists():  # (never created here: a gateway that has not run remembers none)
        return Remembered()
    try:
        store = ReadOnlyIdentities(spool)
    except (sqlite3.Error, OSError) as error:
        return Remembered(unread=wanted, why=" ".join(str(error).split()) or type(error).__name__)
    identities: dict[str, FirstAnswer] = {}
    unread: list[str] = []
    why = None
    try:
        remembered = MeterIdentities(store)
        for meter_id in wanted:
            try:
                first = remembered.first(meter_id)
            except PollError as error:  # a row spoilt, the file damaged past its first page
                unread.append(meter_id)
                why = why or f"{meter_id}'s row: {' '.join(str(error.__cause__ or error).split())}"
                continue
            if first is not None:
                identities[meter_id] = first
    finally:
        store.close()
    return Remembered(identities, unread, why)
