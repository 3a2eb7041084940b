"""The durable local spool: every reading is on disk before it is published, until the broker acks it.

SQLite in WAL mode with ``synchronous=FULL``: a committed reading survives a power cut. Readings are
sealed into numbered batches (``batch_seq``, monotonic and persisted, so it survives restarts) before
they are sent; a batch leaves the spool only through :meth:`Spool.acknowledge`, called on PUBACK.
After a restart, sealed but unacknowledged batches are sent again first, in order, with their
original ``batch_seq``: the collector's ``(meter_id, ts)`` key turns the repeat into a no-op.

The spool holds at most ``max_readings``. What happens at the limit is the owner's policy: with
``drop_oldest`` :meth:`Spool.append` deletes the oldest readings to make room and reports how many
(the gateway raises a ``spool_overflow`` event); with ``stop_polling`` the gateway asks
:meth:`Spool.is_full` before each poll and skips polls until the broker has drained it.

Whatever ``max_readings`` says, the spool keeps ``reserve_bytes`` of room (free space on its
filesystem, and within SQLite's page limit) for delivery: sealing a batch and deleting an
acknowledged one are writes too, and need room in the WAL and the database. Below the reserve,
:meth:`Spool.append` refuses readings with :class:`SpoolFull` (and :meth:`Spool.is_full` says so),
until acknowledged batches have freed their space. Before, an outage that filled the disk left the
spool unable to seal: nothing was delivered or deleted even with the broker back, for good.

One process at a time has a spool: :class:`Spool` locks it as it opens (``flock`` on ``SPOOL.lock``
beside the file, see :func:`_take_lock`) until :meth:`Spool.close` or the process's end, and a
second open, in this process or another, is refused with :class:`SpoolInUse`. Before, two gateways
on one spool (a supervisor's restart racing a manual run, two configurations naming one file) both
ran, and both sent and deleted its batches. Reading the file needs no lock (``sqlite3 -readonly``:
WAL gives a reader a consistent snapshot while the gateway writes).

The spool's file is created if missing, owner-only (0600; an existing one readable by every user
of the box is closed to them as it opens: :mod:`gateway.spool_access`), its folder never: the folder
is made at install, on the storage the spool is kept on (an SD card). Before, a missing folder was
created, so a card that had not mounted left its readings on the card, and the gateway started a
new, empty spool on the root filesystem (and filled it) without a word. A missing folder now stops the start, naming it.

The same database keeps what must outlive a restart beside the readings: pulse counters' state,
wireless M-Bus freshness, each meter's health (last good read, consecutive failures, offline since),
the identity each meter answered with first (a wired M-Bus meter's identification, a Modbus
meter's serial number), with its kind.
A spool file from an earlier version opens with its readings, batches and events: tables it lacks
are created as the spool opens (``CREATE TABLE IF NOT EXISTS``), and a column a table gained since
is added by the migrations numbered in ``PRAGMA user_version`` (:data:`_MIGRATIONS`). A table that
exists is never changed by ``CREATE TABLE IF NOT EXISTS``: a spool from 65273a0 kept ``pulse_state``
without ``count_m3``, and every poll of every pulse counter failed on it ("no such column").
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Concatenate, Literal, ParamSpec, TypeVar

from aquami.byte_sizes import size_in_words
from aquami.clock import Clock, utc_now
from gateway import spool_access
from gateway.health import SavedMeter
from gateway.pulse import PulseState
from gateway.spool_salvage import Salvage, is_damage, put_back, salvage_into, set_aside

#: What a spool found damaged as it opens does: set aside and salvaged (gateway.spool_salvage), or
#: the gateway stops (SpoolUnusable), as before.
OnDamage = Literal["set_aside", "stop"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    batch_seq INTEGER
);
CREATE INDEX IF NOT EXISTS readings_by_batch ON readings (batch_seq, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('next_batch_seq', 1);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pulse_wraps (meter_id TEXT PRIMARY KEY, last_m3 REAL NOT NULL, wraps INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pulse_state (
    meter_id TEXT PRIMARY KEY, last_m3 REAL NOT NULL, offset_m3 REAL NOT NULL, last_at TEXT NOT NULL,
    count_m3 REAL NOT NULL,  -- m3 per count: litres_per_pulse / 1000
    -- the count and offset before a read taken for a module restart, until the next read (else NULL)
    before_last_m3 REAL, before_offset_m3 REAL
);
CREATE TABLE IF NOT EXISTS wmbus_freshness (
    meter_id TEXT NOT NULL, device TEXT NOT NULL, message_counter INTEGER, meter_time TEXT,
    PRIMARY KEY (meter_id, device)
);
CREATE TABLE IF NOT EXISTS meter_health (
    meter_id TEXT PRIMARY KEY, last_good TEXT, offline_since TEXT, consecutive_failures INTEGER NOT NULL
);
-- each meter's first answer's identity, whatever its protocol (named when M-Bus alone had one)
CREATE TABLE IF NOT EXISTS mbus_identities (
    meter_id TEXT PRIMARY KEY, identification TEXT NOT NULL, first_at TEXT NOT NULL,
    kind TEXT  -- 'identification' (M-Bus), 'serial number' (Modbus); NULL: an earlier version's row
);
"""


def _add_pulse_count_m3(db: sqlite3.Connection) -> None:
    """``pulse_state`` from 65273a0 has no ``count_m3``. Its rows get NULL, one count's volume
    unknown: :class:`gateway.pulse.PulseWrap` takes them at the meter's present rate, as it takes an
    earlier version's ``pulse_wraps`` rows (a change of litres_per_pulse before this is not seen)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(pulse_state)")}
    if "count_m3" not in columns:  # (a spool that has it: created by _SCHEMA since, or by ea52fa8)
        db.execute("ALTER TABLE pulse_state ADD COLUMN count_m3 REAL")


def _add_pulse_before_restart(db: sqlite3.Connection) -> None:
    """``pulse_state`` gains the state before a read taken for a module restart (NULL: none), kept
    in memory only before: see :class:`gateway.pulse.PulseWrap`."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(pulse_state)")}
    for column in ("before_last_m3", "before_offset_m3"):
        if column not in columns:  # (a spool that has them: created by _SCHEMA since)
            db.execute(f"ALTER TABLE pulse_state ADD COLUMN {column} REAL")


def _add_identity_kind(db: sqlite3.Connection) -> None:
    """``mbus_identities`` gains each identity's kind (gateway.meter_identity: an M-Bus identification
    and a Modbus serial number are not compared). Its rows get NULL: compared as before, and given
    their kind the first time an answer matches them."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(mbus_identities)")}
    if "kind" not in columns:  # (a spool that has it: created by _SCHEMA since)
        db.execute("ALTER TABLE mbus_identities ADD COLUMN kind TEXT")


#: The spool's schema changes since user_version was kept, in order: migration n takes a spool of
#: user_version n - 1 (0: any spool written before) to n. Each is safe to run on a spool that has the
#: change already: a spool of user_version 0 may be of any earlier version, or new.
_MIGRATIONS = (_add_pulse_count_m3, _add_pulse_before_restart, _add_identity_kind)

_SAVE_METER_HEALTH = (
    "INSERT INTO meter_health (meter_id, last_good, offline_since, consecutive_failures) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (meter_id) DO UPDATE SET last_good = excluded.last_good, "
    "offline_since = excluded.offline_since, consecutive_failures = excluded.consecutive_failures"
)

log = logging.getLogger(__name__)

#: The room a spool keeps for delivery (see the module's docstring). Sealing a window of batches and
#: deleting them take far less; what is large is SQLite's WAL: up to its auto-checkpoint (1000
#: pages, 4 MiB) and the transaction under way, written again from nothing after a restart, and the
#: database file growing by as much when a checkpoint copies the WAL's new pages into it.
RESERVE_BYTES = 16 * 1024 * 1024

#: Freed pages beyond this go back to the filesystem (``PRAGMA incremental_vacuum``) after an
#: acknowledgement: a spool that drained an outage's backlog kept the file it grew to (200,000
#: readings: 46.6 MiB, 41.9 MiB of it free pages, the same after a restart), and the disk it filled
#: stayed full for everything else on the gateway. Below it, freed pages wait for the next readings.
RECLAIM_BYTES = 8 * 1024 * 1024

#: A spool file from before auto_vacuum was set (``NONE``) is rewritten with it (``VACUUM``) as it
#: opens, or once it has drained, when it holds at most this much and the filesystem has room for
#: the copy VACUUM writes beside the reserve; a larger one waits, so the rewrite stays short.
VACUUM_LIVE_MAX_BYTES = 32 * 1024 * 1024
_AUTO_VACUUM_INCREMENTAL = 2


class SpoolFull(Exception):
    """The spool refused readings: less room left than its reserve for delivery."""


class NotSpooled(Exception):
    """A meter's reading (polled, or heard by a receiver) that could not be stored (the spool refused
    it); already reported to the meter's health as its failure."""


class SpoolUnusable(Exception):
    """The spool's file cannot be opened as a spool (the message names it, and SQLite's reason)."""


class SpoolDamaged(SpoolUnusable):
    """The spool's file is damaged (SQLite: ``database disk image is malformed``, ``file is not a
    database``, or its ``quick_check`` finds a fault): :attr:`reason` says how."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SpoolInUse(SpoolUnusable):
    """Another process has the spool open: its lock file is locked (the message names the spool, and
    the holder's pid when the lock file says it)."""


def _one_line(fault: str) -> str:
    """``PRAGMA quick_check``'s finding in one line: it says ``*** in database main ***`` on a line of
    its own before the fault, which broke the gateway's one-line error (and its log line) in two."""
    lines = [line.strip() for line in fault.splitlines()]
    said = "; ".join(line for line in lines if line and not (line.startswith("***") and line.endswith("***")))
    return said or " ".join(fault.split())


def folder_missing(spool: Path) -> str | None:
    """Why a spool at ``spool`` cannot be opened on this machine for want of its folder (which the
    gateway never makes), or None: what ``gateway run`` refuses to start on, and ``gateway check``
    warns of."""
    if spool.parent.exists():
        return None
    return f"its folder {spool.parent} does not exist (is its storage mounted?)"


def lock_path(spool: Path) -> Path:
    """The lock file of the spool at ``spool``: beside the file the path leads to (a symlink
    followed), named after it, so two paths to one spool take one lock."""
    real = Path(os.path.realpath(spool))
    return real.with_name(real.name + ".lock")


def _take_lock(spool: Path) -> IO[str]:
    """Lock the spool for this process (``flock``, exclusive, not waiting) and write its pid in the
    lock file; the lock lasts until the file returned is closed, or the process ends however it ends
    (the kernel releases it: a crashed gateway's lock does not outlive it, as a pid file would). The
    file is never deleted: a gateway starting as another deleted it would lock a new file while a
    third locked the old one. SQLite's own locks are not it: they are per transaction, and a second
    connection waits for them, then goes on."""
    path = lock_path(spool)
    try:
        file = path.open("a+", encoding="ascii")
    except OSError as error:
        raise SpoolUnusable(f"cannot open the spool {spool}: its lock file: {error}") from error
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read(32).strip()
        file.close()
        by = f"pid {holder} holds its lock {path}" if holder.isdigit() else f"its lock {path} is held (pid not known)"
        raise SpoolInUse(f"the spool {spool} is in use by another gateway: {by}") from None
    except OSError as error:  # a filesystem without locks: two gateways could not be told apart
        file.close()
        raise SpoolUnusable(f"cannot lock the spool {spool} ({path}): {error}") from error
    file.truncate(0)
    file.write(f"{os.getpid()}\n")
    file.flush()
    return file


def _close_to_others(spool: Path) -> None:
    """Take every user's permissions off an existing spool's files, saying so (gateway.spool_access)."""
    closed, still_open = spool_access.close_to_others(spool)
    if closed:
        names = ", ".join(str(p) for p in closed)
        log.warning(
            "spool %s: every user of this machine could read it; now only its owner and group may (%s)", spool, names
        )
    if still_open:
        names = ", ".join(str(p) for p in still_open)
        log.warning(
            "spool %s: every user of this machine can read it, and its mode cannot be changed (%s): "
            "the filesystem's mount options decide it (vfat: uid=aquami,fmask=0077,dmask=0077)",
            spool,
            names,
        )


@dataclass(frozen=True, slots=True)
class Appended:
    stored: int
    dropped: int = 0  # the oldest readings deleted to keep within the limit (drop_oldest)


@dataclass(frozen=True, slots=True)
class SealedBatch:
    batch_seq: int
    bodies: list[str]  # each reading's JSON as stored: the publisher splices them, never re-encodes

    @property
    def readings(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.bodies]


@dataclass(frozen=True, slots=True)
class _NotRemoved:
    """A file of a failed salvage's new spool that could not be removed, and why."""

    file: Path
    identity: tuple[int, int] | None  # (device, inode) as it was refused: the damaged file put back over it is not it
    why: str


def _identity(file: Path) -> tuple[int, int] | None:
    try:
        found = file.lstat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _still_there(not_removed: list[_NotRemoved]) -> str:
    """The words for the new spool's files still where the damaged file's must be (none put back over
    them): they are to be removed by hand, as SQLite would take them for the damaged file's own
    (a WAL applied to a file it is not from). "" when there are none."""
    still = [n for n in not_removed if n.identity is not None and _identity(n.file) == n.identity]
    if not still:
        return ""
    names = ", ".join(f"{n.file.name} ({n.why})" for n in still)
    files, them = ("file", "it") if len(still) == 1 else ("files", "them")
    return (
        f"; the salvage's new spool {files} {names} cannot be removed: remove {them} from {still[0].file.parent} "
        f"by hand before the gateway starts again, else that start takes {them} for the damaged file's own"
    )


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _mends_damage(method: Callable[Concatenate[Spool, _P], _R]) -> Callable[Concatenate[Spool, _P], _R]:
    """A spool method that meets a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB) has it mended
    (:meth:`Spool._mend`), then runs once more on the new spool (``set_aside``) or raises (``stop``).
    Before, each such call failed, for ever: polls failed as "cannot write to the spool", and a batch
    on a damaged page ended every MQTT session the publisher opened."""

    @functools.wraps(method)
    def mended(self: Spool, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.unusable is not None:  # a salvage failed: no file is open (Spool._mend)
            raise SpoolUnusable(self.unusable)
        generation = self._generation
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            self._mend(error, generation)
            if self.on_damage != "set_aside":
                raise
        return method(self, *args, **kwargs)

    return mended


class Spool:
    """A thread-safe durable queue of readings (the MQTT client acknowledges from its own thread)."""

    def __init__(
        self,
        path: Path | str,
        max_readings: int | None = None,
        drop_oldest: bool = True,
        reserve_bytes: int = RESERVE_BYTES,
        reclaim_bytes: int = RECLAIM_BYTES,
        on_damage: OnDamage = "set_aside",
        clock: Clock = utc_now,
    ):
        self.path = Path(path)
        self.max_readings = max_readings
        self.drop_oldest = drop_oldest
        self.reserve_bytes = reserve_bytes
        self.reclaim_bytes = reclaim_bytes
        self._short_of_room = False  # the last look found less room than the reserve
        self._refused_bytes = 0  # what the last append wanted to store
        self.dropped_total = 0
        self.messages_dropped_total = 0  # events beyond add_message's limit, the oldest first
        self._lock = threading.RLock()  # re-entered by _mend, which reopens under it
        if (missing := folder_missing(self.path)) is not None:  # never made here: see the module's docstring
            raise SpoolUnusable(f"cannot open the spool {self.path}: {missing}")
        self._held = _take_lock(self.path)  # before SQLite opens it: one process at a time, for its life
        self.on_damage = on_damage
        self._clock = clock
        #: the last damage found (as it opened, or while running) and what it gave (gateway.spool_salvage)
        self.damage: Salvage | None = None
        #: told the reason when damage is found while running (after its salvage, with ``set_aside``);
        #: on the thread that found it
        self.on_damage_found: Callable[[str], None] | None = None
        self._generation = 0  # the connections opened: a damage already mended by another thread is not mended twice
        self._closed = False
        #: why the spool can no longer be used (a salvage while running failed: its damaged file is left in
        #: place, no file open), else None; every call then raises SpoolUnusable saying it
        self.unusable: str | None = None
        #: told ``unusable`` when it is found (on the thread that found it): the gateway stops (exit 1), and
        #: its next start salvages the damaged file, as at any start
        self.on_unusable: Callable[[str], None] | None = None
        self._messages_counted = 0  # events waiting as last counted (set as it opens): messages_waiting once closed
        try:
            try:
                self._open()
            except SpoolDamaged as damaged:
                if on_damage != "set_aside":
                    raise
                self._salvage(damaged.reason)
        except BaseException:  # whatever stops the spool opening gives its lock up
            self._held.close()
            raise

    def _open(self, for_salvage: bool = False) -> None:
        """Open (or make) the database at ``self.path``, its lock held; :class:`SpoolUnusable` if it
        cannot be (its cause SQLite's error), the connection closed. ``for_salvage``: the new spool a
        salvage makes, said by the salvage's own line (its "none there, a new one created" was false:
        the damaged file was there, set aside a moment before)."""
        try:
            new = not self.path.exists()
            if new:  # owner-only before SQLite makes it, so its -wal and -shm are too (gateway.spool_access)
                spool_access.create_owner_only(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise SpoolUnusable(f"cannot open the spool {self.path}: {error}") from error
        if new and not for_salvage:  # in the log: a spool found new where one was kept says its storage was not there
            log.info("spool %s: none there, a new one created", self.path)
        else:
            _close_to_others(self.path)
        try:
            # every page read once, before anything is written to it (a damaged file is set aside as it
            # was found): damage in a page nothing reads at a start was met only when a batch on it
            # was sent, and the publisher then failed on it at every connection, for ever
            (fault,) = ("ok",) if new else self._db.execute("PRAGMA quick_check(1)").fetchone()
            if fault != "ok":
                fault = _one_line(fault)
                raise SpoolDamaged(f"cannot open the spool {self.path}: it is damaged: {fault}", fault)
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file's; an older one's by _convert_to_reclaim
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # the WAL file back to this size once it is checkpointed: the pages a reclaim moves pass through it
            self._db.execute(f"PRAGMA journal_size_limit={4 * 1024 * 1024}")
            with self._lock:
                self._db.executescript(_SCHEMA)
                self._migrate(new)
                self._depth: int = self._db.execute("SELECT count(*) FROM readings").fetchone()[0]
                self._messages_counted = int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])
                self._convert_to_reclaim()
        except sqlite3.Error as error:  # not a database, damaged, or on a disk mounted read-only
            self._db.close()
            if is_damage(error):
                raise SpoolDamaged(f"cannot open the spool {self.path}: it is damaged: {error}", str(error)) from error
            raise SpoolUnusable(f"cannot open the spool {self.path}: {error}") from error
        except SpoolDamaged:
            self._db.close()
            raise
        self._generation += 1

    def _salvage(self, reason: str, found: str = "as it opened") -> None:
        """The file is damaged (its connection closed): set it aside, open a new spool in its place and
        copy into it what the old one still gives (gateway.spool_salvage), saying so in one ERROR
        line. A new spool that cannot be made (the disk full) raises :class:`SpoolUnusable`."""
        at = self._clock()
        try:
            aside = set_aside(self.path, at)
        except OSError as error:
            said = f"cannot open the spool {self.path}: it is damaged ({reason}), and cannot be set aside: {error}"
            raise SpoolUnusable(said) from error
        try:
            self._open(for_salvage=True)
            with self._lock, self._transaction():
                readings, lost, events = salvage_into(aside, self._db)
        except (SpoolUnusable, OSError, sqlite3.Error) as error:
            # the new spool cannot be made or filled (a full disk): the damaged file goes back in its
            # place, so the next start finds it and salvages it; set aside, a start made a new, empty spool
            # beside it and its readings waited there for someone who knew
            not_removed = self._unmake_new_spool()
            why = str(error).removeprefix(f"cannot open the spool {self.path}: ")  # (the line names it once)
            said = (
                f"cannot open the spool {self.path}: it is damaged ({reason}), and no new spool can be made to "
                f"salvage it into: {why}"
            )
            try:  # even with the new spool's files not all removed: the damaged file back is what matters
                put_back(aside, self.path)
            except OSError as stranded:  # said as the spool's: the file left aside, and the hand it needs
                raise SpoolUnusable(f"{said}{_still_there(not_removed)}; {stranded}") from stranded
            if still := _still_there(not_removed):
                raise SpoolUnusable(f"{said}{still}; the damaged file is back in its place") from error
            raise SpoolUnusable(f"{said}; it is left in place, salvaged at the next start that has room") from error
        self._depth = readings
        self.damage = Salvage(reason, aside, at, readings, lost, events)
        log.error("spool %s is damaged (found %s: %s): %s", self.path, found, reason, self.damage.sentence())

    def _unmake_new_spool(self) -> list[_NotRemoved]:
        """The new spool a salvage began (its file just made, nothing in it but what the failed salvage
        rolled back): closed, and its files removed, so the damaged one can go back in its place.
        Returns those that could not be removed (each tried): before, the first refused went out as the
        bare OSError, and the damaged file was never put back (left aside, the next start making a new,
        empty spool beside it)."""
        try:
            self._db.close()
        except sqlite3.Error as error:
            log.warning("spool %s: closing the new spool: %s", self.path, error)
        not_removed = []
        for suffix in ("-wal", "-shm", ""):
            file = self.path.with_name(self.path.name + suffix)
            try:
                file.unlink(missing_ok=True)
            except OSError as error:
                not_removed.append(_NotRemoved(file, _identity(file), error.strerror or str(error)))
        return not_removed

    def _mend(self, error: sqlite3.DatabaseError, generation: int) -> None:
        """Damage met while running (an insert, a read): with ``set_aside``, the file is set aside and
        salvaged as at a start, unless another thread has done it since ``generation``; with
        ``stop``, only said to ``on_damage_found``."""
        with self._lock:
            if generation != self._generation:
                return
            if self.on_damage == "set_aside":
                try:
                    self._db.close()  # its WAL checkpointed into the file set aside: the same rows
                except sqlite3.Error as closing:
                    log.warning("spool %s: closing the damaged file: %s", self.path, closing)
                try:
                    self._salvage(str(error), "while running")
                except SpoolUnusable as failed:
                    # no file open: each call would fail on the closed database, for ever; each now says
                    # why, and the owner stops (the next start salvages the file left in place)
                    self.unusable = str(failed)
                    log.error("%s", failed)
                    if self.on_unusable is not None:
                        self.on_unusable(self.unusable)
                    raise
        if self.on_damage_found is not None:
            self.on_damage_found(str(error))

    def close(self) -> None:
        """Close the database, then give its lock up (another process may take the spool). What it
        held is still told (:meth:`depth`, :meth:`messages_waiting`: as it was at the close): a
        gateway's status asked after it stopped raised "Cannot operate on a closed database"."""
        with self._lock:
            if self._closed:
                return
            if self.unusable is not None:  # no file open: the last count stands
                self._closed = True
                self._held.close()
                return
            try:
                self._count_messages()
            except (sqlite3.Error, SpoolUnusable) as error:  # a failing disk: the last count stands, said
                log.warning(
                    "spool %s: events waiting not counted as it closes (%s): %d, as last counted",
                    self.path,
                    error,
                    self._messages_counted,
                )
            self._closed = True
            self._db.close()
            self._held.close()

    @property
    def closed(self) -> bool:
        """Closed (:meth:`close`), or no longer usable (:attr:`unusable`): nothing more is stored or read."""
        return self._closed or self.unusable is not None

    def _migrate(self, new: bool) -> None:
        """Bring an earlier version's spool to this schema, each migration with its user_version in
        one transaction (a crash in between leaves the spool at one of them). Under ``_lock``.
        A ``new`` spool, made by _SCHEMA as it is now, is only stamped with the latest version:
        before, it logged every migration as applied ("schema migrated to version 1") right after
        "none there, a new one created", as if an old spool had been found."""
        if new:
            self._db.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")
            return
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, migration in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self._transaction():
                migration(self._db)
                self._db.execute(f"PRAGMA user_version = {number}")
            log.info("spool %s: schema migrated to version %d (%s)", self.path, number, migration.__name__)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (taken at once: BEGIN IMMEDIATE), committed, or rolled back if the
        block raises (a full disk), so the connection is never left inside it. Under ``_lock``."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # SQLITE_FULL (and SQLITE_IOERR, SQLITE_NOMEM) may have rolled the transaction back
            # already: a ROLLBACK then raised "cannot rollback - no transaction is active" in place
            # of the error that says what happened
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _room(self) -> int:
        """Bytes the database can still take: the pages it has freed (reused before it grows), and
        the free space on its filesystem or what SQLite's page limit (``max_page_count``) leaves,
        whichever is less. Under ``_lock``."""
        page_size, pages, free_pages = self._pages()
        max_pages = int(self._db.execute("PRAGMA max_page_count").fetchone()[0])
        return free_pages * page_size + min(self._disk_free(), (max_pages - pages) * page_size)

    def _disk_free(self) -> int:
        """Bytes free on the spool's filesystem for an unprivileged writer."""
        disk = os.statvfs(self.path.parent)
        return disk.f_bavail * disk.f_frsize

    def _pages(self) -> tuple[int, int, int]:
        """(page size, pages, free pages) of the database. Under ``_lock``."""
        page_size, pages, free_pages = (
            int(self._db.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_size", "page_count", "freelist_count")
        )
        return page_size, pages, free_pages

    def _convert_to_reclaim(self) -> None:
        """Rewrite a spool file without auto_vacuum with it (one ``VACUUM``), when it holds at most
        ``VACUUM_LIVE_MAX_BYTES`` and the filesystem has room for the copy beside the reserve; else
        it waits for the next chance. A failure (a disk filled meanwhile) leaves the file as it was.
        Under ``_lock``."""
        if int(self._db.execute("PRAGMA auto_vacuum").fetchone()[0]) == _AUTO_VACUUM_INCREMENTAL:
            return
        page_size, pages, free_pages = self._pages()
        live = (pages - free_pages) * page_size
        if live > VACUUM_LIVE_MAX_BYTES or self._disk_free() < self.reserve_bytes + 2 * live:
            return  # the copy, and the WAL that takes it in
        try:
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("VACUUM")
        except sqlite3.Error as error:
            log.warning("spool %s: not rewritten to give freed space back (%s); tried again later", self.path, error)
            return
        after_page_size, after_pages, _ = self._pages()
        log.info(
            "spool %s: rewritten to give freed space back (%s, was %s)",
            self.path,
            size_in_words(after_pages * after_page_size),
            size_in_words(pages * page_size),
        )

    def _give_back_room(self) -> None:
        """After acknowledgements: freed pages beyond ``reclaim_bytes`` go back to the filesystem, as
        many as it has room for beside the reserve (they pass through the WAL). Delivery never
        waits on it failing: the acknowledged batches are gone already. Under ``_lock``."""
        page_size, _, free_pages = self._pages()
        if free_pages * page_size < self.reclaim_bytes:
            return
        if int(self._db.execute("PRAGMA auto_vacuum").fetchone()[0]) != _AUTO_VACUUM_INCREMENTAL:
            self._convert_to_reclaim()
            return
        pages = min(free_pages, (self._disk_free() - self.reserve_bytes) // page_size)
        if pages <= 0:
            return
        try:  # each page is one step of the statement: execute took one (one page), executescript takes all
            self._db.executescript(f"PRAGMA incremental_vacuum({pages});")
        except sqlite3.Error as error:
            log.warning("spool %s: freed space not given back (%s)", self.path, error)

    @_mends_damage
    def append(self, readings: Iterable[dict[str, Any]]) -> Appended:
        """Store readings durably (one transaction); at the limit, drop the oldest if so configured.
        Raises :class:`SpoolFull`, storing none of them, when they would leave less room than the
        reserve kept for delivery."""
        rows = [(json.dumps(r, separators=(",", ":")),) for r in readings]
        dropped = 0
        with self._lock:
            self._refused_bytes = sum(len(body) for (body,) in rows)
            room = self._room() - self._refused_bytes
            self._short_of_room = room < self.reserve_bytes
            if self._short_of_room:
                refused = f"{len(rows)} reading" if len(rows) == 1 else f"{len(rows)} readings"
                raise SpoolFull(
                    f"spool full: {size_in_words(max(room, 0))} left for {self.path}, less than the "
                    f"{size_in_words(self.reserve_bytes)} kept to deliver what it holds; "
                    f"{refused} refused until the broker has taken some"
                )
            with self._transaction():
                self._db.executemany("INSERT INTO readings (body) VALUES (?)", rows)
                excess = 0 if self.max_readings is None else self._depth + len(rows) - self.max_readings
                if excess > 0 and self.drop_oldest:
                    dropped = self._db.execute(
                        "DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY id LIMIT ?)", (excess,)
                    ).rowcount
            self._depth += len(rows) - dropped
            self.dropped_total += dropped
        return Appended(len(rows), dropped)

    @_mends_damage
    def is_full(self) -> bool:
        """At ``max_readings``, or short of room: the last append was refused, and a fresh look
        finds no more room. Looked at afresh each time while short: under ``stop_polling`` nothing
        is appended while this says full, and the room may come back by other means than the
        spool's own deliveries (a disk filled by logs, cleared by an operator)."""
        if self._short_of_room:  # room again for what was refused
            with self._lock:
                self._short_of_room = self._room() - self._refused_bytes < self.reserve_bytes
        return self.full_as_last_seen()

    @property
    def short_of_room(self) -> bool:
        """The last append was refused, and no look since (:meth:`is_full`) found room again."""
        return self._short_of_room

    def full_as_last_seen(self) -> bool:
        """:meth:`is_full` without a fresh look at the room: no database read, for the event loop."""
        return self._short_of_room or (self.max_readings is not None and self._depth >= self.max_readings)

    @_mends_damage
    def sealed_batches(self, after_seq: int = 0, limit: int = 100) -> list[SealedBatch]:
        """Sealed, unacknowledged batches with ``batch_seq > after_seq``, oldest first."""
        with self._lock:
            seqs = [
                row[0]
                for row in self._db.execute(
                    "SELECT DISTINCT batch_seq FROM readings WHERE batch_seq > ? ORDER BY batch_seq LIMIT ?",
                    (after_seq, limit),
                )
            ]
            return [self._load(seq) for seq in seqs]

    def _load(self, batch_seq: int) -> SealedBatch:
        bodies = self._db.execute("SELECT body FROM readings WHERE batch_seq = ? ORDER BY id", (batch_seq,))
        return SealedBatch(batch_seq, [body for (body,) in bodies])

    def seal(self, max_readings: int) -> SealedBatch | None:
        """Seal the oldest unsealed readings (at most ``max_readings``) into the next batch."""
        sealed = self.seal_many(max_readings, 1)
        return sealed[0] if sealed else None

    @_mends_damage
    def seal_many(self, max_readings: int, batches: int) -> list[SealedBatch]:
        """Seal up to ``batches`` batches of at most ``max_readings`` each, in one transaction."""
        with self._lock:
            with self._transaction():
                ids = [
                    row[0]
                    for row in self._db.execute(
                        "SELECT id FROM readings WHERE batch_seq IS NULL ORDER BY id LIMIT ?", (max_readings * batches,)
                    )
                ]
                seqs = self._number(ids, max_readings, None)
            return [self._load(seq) for seq in seqs]

    @_mends_damage
    def reseal(self, batch_seq: int, max_readings: int) -> range:
        """Seal a sealed, unacknowledged batch's readings again as batches of at most
        ``max_readings`` (a batch larger than the broker takes), in one transaction. They take the
        next ``batch_seq``s, so batch_seq stays monotonic in the order batches are sent; the old
        one is never sent again. Returns the new batch_seqs."""
        with self._lock, self._transaction():
            ids = [
                row[0]
                for row in self._db.execute("SELECT id FROM readings WHERE batch_seq = ? ORDER BY id", (batch_seq,))
            ]
            return self._number(ids, max_readings, batch_seq)

    def _number(self, ids: list[int], max_readings: int, current: int | None) -> range:
        """Give the readings ``ids`` (ascending, all in batch ``current``; None: unsealed) the next
        batch_seqs, at most ``max_readings`` to a batch, in the caller's transaction."""
        groups = [ids[i : i + max_readings] for i in range(0, len(ids), max_readings)]
        (first_seq,) = self._db.execute("SELECT value FROM counters WHERE name = 'next_batch_seq'").fetchone()
        if groups:
            self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'next_batch_seq'", (len(groups),))
        for seq, group in enumerate(groups, start=first_seq):
            self._db.execute(
                "UPDATE readings SET batch_seq = ? WHERE batch_seq IS ? AND id BETWEEN ? AND ?",
                (seq, current, group[0], group[-1]),
            )
        return range(first_seq, first_seq + len(groups))

    def acknowledge(self, batch_seq: int) -> int:
        """The broker has the batch: delete it. Returns how many readings left the spool."""
        return self.acknowledge_many([batch_seq])

    @_mends_damage
    def acknowledge_many(self, batch_seqs: list[int]) -> int:
        """Delete several acknowledged batches in one transaction (one fsync)."""
        if not batch_seqs:
            return 0
        with self._lock:
            with self._transaction():  # (autocommit otherwise: one commit, and one fsync, per batch)
                cursor = self._db.executemany("DELETE FROM readings WHERE batch_seq = ?", [(s,) for s in batch_seqs])
            self._depth -= cursor.rowcount
            self._give_back_room()
            return cursor.rowcount

    def depth(self) -> int:
        """Readings on disk not yet acknowledged (sealed or not): the spool-depth metric."""
        return self._depth

    @_mends_damage
    def depth_besides(self, batch_seqs: Collection[int]) -> int:
        """Readings not yet acknowledged outside the batches ``batch_seqs`` (unsealed ones included)."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM readings "
                "WHERE batch_seq IS NULL OR batch_seq NOT IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(batch_seqs)),),
            ).fetchone()
        return int(count)

    @_mends_damage
    def next_batch_seq(self) -> int:
        with self._lock:
            (value,) = self._db.execute("SELECT value FROM counters WHERE name = 'next_batch_seq'").fetchone()
            return int(value)

    # pulse counters' wrap state as an earlier version kept it (gateway.pulse.WrapStore): read, no longer written
    @_mends_damage
    def load_wrap(self, meter_id: str) -> tuple[float | None, int]:
        with self._lock:
            row = self._db.execute("SELECT last_m3, wraps FROM pulse_wraps WHERE meter_id = ?", (meter_id,)).fetchone()
        return (None, 0) if row is None else (float(row[0]), int(row[1]))

    # pulse counters' state since the wrap or restart is judged by time (gateway.pulse.WrapStore);
    # pulse_wraps above is an earlier version's, read when a meter has no row here yet
    # (count_m3 None: a row kept by 65273a0, which did not store it)
    @_mends_damage
    def load_pulse(self, meter_id: str) -> PulseState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT last_m3, offset_m3, last_at, count_m3, before_last_m3, before_offset_m3 "
                "FROM pulse_state WHERE meter_id = ?",
                (meter_id,),
            ).fetchone()
        if row is None:
            return None
        before = None if row[4] is None or row[5] is None else (float(row[4]), float(row[5]))
        count = None if row[3] is None else float(row[3])
        return PulseState(float(row[0]), float(row[1]), datetime.fromisoformat(row[2]), count, before)

    @_mends_damage
    def save_pulse(
        self,
        meter_id: str,
        last_m3: float,
        offset_m3: float,
        at: datetime,
        count_m3: float,
        before_restart: tuple[float, float] | None = None,
    ) -> None:
        before_last, before_offset = before_restart if before_restart is not None else (None, None)
        with self._lock:
            self._db.execute(
                "INSERT INTO pulse_state (meter_id, last_m3, offset_m3, last_at, count_m3, before_last_m3, "
                "before_offset_m3) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (meter_id) DO UPDATE SET last_m3 = excluded.last_m3, offset_m3 = excluded.offset_m3, "
                "last_at = excluded.last_at, count_m3 = excluded.count_m3, "
                "before_last_m3 = excluded.before_last_m3, before_offset_m3 = excluded.before_offset_m3",
                (meter_id, last_m3, offset_m3, at.isoformat(), count_m3, before_last, before_offset),
            )

    # wireless M-Bus meters' last accepted message counter and clock (gateway.wmbus_replay.FreshnessStore)
    @_mends_damage
    def load_freshness(self, meter_id: str, device: str) -> tuple[int | None, str | None]:
        with self._lock:
            row = self._db.execute(
                "SELECT message_counter, meter_time FROM wmbus_freshness WHERE meter_id = ? AND device = ?",
                (meter_id, device),
            ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    @_mends_damage
    def save_freshness(self, meter_id: str, device: str, message_counter: int | None, meter_time: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO wmbus_freshness (meter_id, device, message_counter, meter_time) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (meter_id, device) DO UPDATE SET "
                "message_counter = excluded.message_counter, meter_time = excluded.meter_time",
                (meter_id, device, message_counter, meter_time),
            )

    # meters' first answer's identity (gateway.meter_identity.IdentityStore): a wired M-Bus meter's
    # identification, a Modbus meter's serial number (its ``kind``), one row per meter id. The table
    # keeps the name it had when only M-Bus meters were checked: a spool of before reads on, salvage
    # copies it.
    @_mends_damage
    def load_identity(self, meter_id: str) -> tuple[str, str, str | None] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT identification, first_at, kind FROM mbus_identities WHERE meter_id = ?", (meter_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), None if row[2] is None else str(row[2]))

    @_mends_damage
    def save_identity(self, meter_id: str, identification: str, first_at: str, kind: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO mbus_identities (meter_id, identification, first_at, kind) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (meter_id) DO UPDATE SET identification = excluded.identification, "
                "first_at = excluded.first_at, kind = excluded.kind",
                (meter_id, identification, first_at, kind),
            )

    # meters' health (gateway.health.MeterHealthStore): what the offline and online events depend on
    @_mends_damage
    def load_meter_health(self, meter_id: str) -> tuple[str | None, str | None, int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT last_good, offline_since, consecutive_failures FROM meter_health WHERE meter_id = ?",
                (meter_id,),
            ).fetchone()
        return None if row is None else (row[0], row[1], int(row[2]))

    @_mends_damage
    def save_meter_health(self, rows: Iterable[SavedMeter]) -> None:
        """Store meters' health, all in one transaction (one fsync)."""
        with self._lock, self._transaction():
            self._db.executemany(_SAVE_METER_HEALTH, list(rows))

    # other durable messages (events): kept like readings until the broker acknowledges them
    @_mends_damage
    def add_message(
        self, topic: str, payload: bytes, limit: int = 10_000, meter_health: Iterable[SavedMeter] = ()
    ) -> int:
        """Store a message for the broker, with the meter health it changes (a meter's offline or
        online event and its new state: both or neither); beyond ``limit`` waiting, the oldest go
        (counted in ``messages_dropped_total``, the first of each thousand logged). Returns how many went."""
        with self._lock:
            with self._transaction():
                self._db.execute("INSERT INTO messages (topic, payload) VALUES (?, ?)", (topic, payload))
                self._db.executemany(_SAVE_METER_HEALTH, list(meter_health))
                # by how many wait, not by id: "id <= max(id) - limit" dropped a waiting event once
                # ``limit`` later ones had come, even when those had all been delivered and deleted
                dropped = self._db.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id "
                    "LIMIT max((SELECT count(*) FROM messages) - ?, 0))",
                    (limit,),
                ).rowcount
            before = self.messages_dropped_total
            self.messages_dropped_total += dropped
        if dropped and (before == 0 or before // 1000 != (before + dropped) // 1000):  # the first, then each 1000th
            log.warning("%d events waiting for the broker: the oldest are dropped (%d so far)", limit, before + dropped)
        return dropped

    @_mends_damage
    def messages_after(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [(int(i), str(t), bytes(p)) for i, t, p in rows]

    @_mends_damage
    def delete_messages(self, ids: list[int]) -> None:
        if ids:
            with self._lock:
                self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])

    @_mends_damage
    def messages_besides(self, ids: Collection[int]) -> int:
        """Messages waiting other than ``ids``."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM messages WHERE id NOT IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(ids)),),
            ).fetchone()
        return int(count)

    def messages_waiting(self) -> int:
        """Events waiting for the broker; once closed, as many as waited as it closed (the last
        count, if a failing disk kept it from counting them then)."""
        with self._lock:
            return self._messages_counted if self.closed else self._count_messages()

    @property
    def messages_last_counted(self) -> int:
        """Events waiting as last counted (as it opened, or by :meth:`messages_waiting`): what a
        caller says while the spool fails to count them."""
        return self._messages_counted

    @_mends_damage
    def _count_messages(self) -> int:
        with self._lock:
            self._messages_counted = int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])
            return self._messages_counted
