"""Writing readings with ``COPY``, idempotently on ``(meter_id, ts)``.

A repeat of a reading already stored is a no-op (``ON CONFLICT DO NOTHING``), which turns the
gateways' at-least-once delivery into exactly once in effect. Meters seen for the first time are
recorded (``registered = false``) for the meterization team rather than rejected (with
``assigned_only``, only meters assigned to a gateway: a made-up meter id is a dead letter, no row). A parsed message's
readings and a meter event are held to the gateways their meter is assigned to
(:mod:`collector.meter_gateways`, one query a batch): a gateway's others are dead letters.

The common case (no key stored yet) is one ``COPY`` straight into ``readings`` inside a savepoint, its
lines first sorted into key order, as VEE inserts its estimates (:func:`in_key_order`: in arrival
order the two deadlocked);
meters already known to this process are not registered again, only checked to be still in ``meters``
where nothing else would notice them gone (no gateway check: :meth:`ReadingStore._gone`). When that
COPY meets a stored key (a redelivery), the savepoint is rolled back and the batch takes the careful
path: ``COPY`` into a staging table, merge with ``ON CONFLICT DO NOTHING``, then look at the rows the merge skipped: an
actual reading replaces an estimate VEE made for the same key, or a person's edit of one (the
estimate or edit goes to ``reading_history``), and a reading that differs from the stored one is kept in
``reading_conflicts`` for VEE.

The COPY text is built without a per-row adapter: every field has passed the contract's patterns
(identifiers, UTC timestamps, alarm names, JSON numbers), so none can hold a tab, newline or
backslash that would need escaping. The collector hands :meth:`ReadingStore.write_messages` parsed
messages whose text was built as they arrived (``ParsedMessage.copy_data``, on the collector's
parser thread while this one waits on the database), so the writer only streams bytes;
:meth:`ReadingStore.write` takes rows and builds the same text (:func:`copy_text`). Either way the
readings must come from :func:`collector.batch_parser.parse_reads_message` or hold values as clean
as its.

Durability is the database's: one transaction per flush (up to ``max_batch_readings``), committed
with the server's ``synchronous_commit`` (on by default), and the collector acknowledges a message
to the broker only after that commit returns. No unlogged table, no ``synchronous_commit = off``
here: the collector trades nothing for speed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from collector import db, dead_link_look, meter_gateways
from collector.batch_parser import ROW_COLUMNS, ParsedMessage, ReadingRow, without_readings
from collector.events_parser import EVENT_COLUMNS, EventRow
from collector.gateway_status import GatewayStatus
from collector.meter_turns import ingest_takes_turns

# A transaction PostgreSQL rolled back for its conflict with another (SQLSTATE class 40): a deadlock,
# a serialization failure. Transient, nothing of it written: to be tried again, not taken for the
# database away. (psycopg's DeadlockDetected and SerializationFailure are OperationalErrors, not
# subclasses of its TransactionRollback: all three are named.)
TRANSACTION_CONFLICTS: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.TransactionRollback,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS readings_staging (
    meter_id text, ts timestamptz, volume_m3 numeric, flow_m3h double precision,
    reverse_volume_m3 numeric, alarms text[], gateway_id text, batch_seq bigint
) ON COMMIT DELETE ROWS
"""

# New meters are inserted in one order whoever writes (as readings: meter ids byte by byte): two
# collectors sharing a subscription, a collector and a dead-letter replay, or the loader and a
# collector, registering the same new meters in their arrival orders each waited at ``meters``'
# primary key for a meter the other had inserted (a deadlock, one write rolled back). Also
# _EVENTS_NEW_METERS, and ``assign-meters`` (collector.meter_gateways.assign).
_REGISTER_METERS = """
INSERT INTO meters (meter_id, last_gateway_id, has_readings)
SELECT m, g, false FROM unnest(%s::text[], %s::text[]) AS u(m, g)
ORDER BY m COLLATE "C"
ON CONFLICT (meter_id) DO NOTHING
"""

# (a meter first heard through an event has no reading: has_readings false, collector migration 0067)
_EVENTS_NEW_METERS = """
INSERT INTO meters (meter_id, last_gateway_id, has_readings)
SELECT DISTINCT ON (meter_id COLLATE "C") meter_id, gateway_id, false FROM events_staging WHERE meter_id IS NOT NULL
ORDER BY meter_id COLLATE "C"
ON CONFLICT (meter_id) DO NOTHING
"""

# Known meters still in ``meters`` (the common case: all of them), by its primary key; only when some
# are missing, which ones (an anti-join, which reads the whole of ``meters``).
_STILL_THERE = "SELECT count(*) FROM meters WHERE meter_id = ANY(%s::text[])"
_GONE = """
SELECT k.meter_id FROM unnest(%s::text[]) AS k(meter_id)
WHERE NOT EXISTS (SELECT 1 FROM meters m WHERE m.meter_id = k.meter_id)
"""

# In the order the fast path's COPY inserts (:func:`in_key_order`): meter ids byte by byte, then time.
_MERGE = f"""
INSERT INTO readings ({", ".join(ROW_COLUMNS)})
SELECT {", ".join(ROW_COLUMNS)} FROM readings_staging
ORDER BY meter_id COLLATE "C", ts
ON CONFLICT (meter_id, ts) DO NOTHING
"""

# The estimates and edits among the staged keys (those _REPLACE_ESTIMATES may replace), locked in
# (meter, time) order before the merge, as VEE locks the estimates it deletes
# (collector/vee/runner.py, _delete_estimates_all): taken in the UPDATE's plan order, ingest could
# hold one estimate and wait for another VEE held, while VEE waited for the first (a deadlock, one
# side failed). Locked before the merge, an estimate the merge passes over as stored cannot be
# deleted by VEE before the UPDATE replaces it: its actual read is stored, not skipped as a repeat.
_LOCK_ESTIMATES = """
SELECT count(*) FROM (
    SELECT 1 FROM readings r JOIN (SELECT DISTINCT meter_id, ts FROM readings_staging) s
        ON r.meter_id = s.meter_id AND r.ts = s.ts
    WHERE r.quality IN ('estimated', 'edited')
    ORDER BY r.meter_id, r.ts
    FOR NO KEY UPDATE OF r
) locked
"""

# An actual reading arriving for a key VEE estimated: the actual wins, over a person's edit of the
# estimate too (an edited row whose history holds no actual: the person corrected a guess, not the
# meter); before, the edit beat the meter's own read for good, which waited in reading_conflicts.
# An edit of an actual read stays: the read arriving again is a redelivery of what was corrected.
# The edit goes to reading_history, as the estimate does. DISTINCT ON picks one of several staged
# rows for the key by value, so the outcome does not depend on arrival order.
_REPLACE_ESTIMATES = """
UPDATE readings r
SET volume_m3 = s.volume_m3, flow_m3h = s.flow_m3h, reverse_volume_m3 = s.reverse_volume_m3, alarms = s.alarms,
    quality = 'actual', quality_by = NULL, quality_by_key_id = NULL, quality_reason = NULL, gateway_id = s.gateway_id,
    batch_seq = s.batch_seq, received_at = now()
FROM (
    SELECT DISTINCT ON (meter_id, ts) * FROM readings_staging
    ORDER BY meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms
) s
WHERE r.meter_id = s.meter_id AND r.ts = s.ts
  AND (r.quality = 'estimated' OR (r.quality = 'edited' AND NOT EXISTS (
      SELECT 1 FROM reading_history h WHERE h.meter_id = r.meter_id AND h.ts = r.ts AND h.quality = 'actual')))
"""

# Who changes stored readings in this transaction, and why: reading_history takes it where the new
# version names no one (collector migration 0055).
SAY_WHO = "SELECT set_config('aquami.change_by', %s, true), set_config('aquami.change_reason', %s, true)"

# Same key, different value: the stored reading stays; the other is kept for VEE. A reading that
# was edited or substituted since is compared with its original (the first version in history).
_CONFLICTS = """
INSERT INTO reading_conflicts (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, gateway_id, batch_seq)
SELECT s.meter_id, s.ts, s.volume_m3, s.flow_m3h, s.reverse_volume_m3, s.alarms, s.gateway_id, s.batch_seq
FROM readings_staging s
JOIN readings r ON r.meter_id = s.meter_id AND r.ts = s.ts
LEFT JOIN LATERAL (
    SELECT h.volume_m3, h.flow_m3h, h.reverse_volume_m3, h.alarms FROM reading_history h
    WHERE h.meter_id = r.meter_id AND h.ts = r.ts AND h.quality = 'actual' ORDER BY h.id LIMIT 1
) original ON r.quality IN ('edited', 'substituted')
WHERE (s.volume_m3, s.flow_m3h, s.reverse_volume_m3, s.alarms) IS DISTINCT FROM
      (coalesce(original.volume_m3, r.volume_m3),
       CASE WHEN original.volume_m3 IS NULL THEN r.flow_m3h ELSE original.flow_m3h END,
       CASE WHEN original.volume_m3 IS NULL THEN r.reverse_volume_m3 ELSE original.reverse_volume_m3 END,
       coalesce(original.alarms, r.alarms))
ON CONFLICT DO NOTHING
"""

_EVENTS_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS events_staging (
    meter_id text, ts timestamptz, event text, state text, detail jsonb, gateway_id text, batch_seq bigint
) ON COMMIT DELETE ROWS
"""


# In one order whoever writes (as readings: meter ids byte by byte, then time; then the rest of
# events_key, a total order of it): two collectors sharing a subscription, or a collector and a
# dead-letter replay, inserting the same events in their arrival orders each waited at events_key
# for a key the other had inserted (a deadlock, one write rolled back). A gateway's own events last.
_EVENTS_MERGE = f"""
INSERT INTO events ({", ".join(EVENT_COLUMNS)})
SELECT {", ".join(EVENT_COLUMNS)} FROM events_staging
ORDER BY meter_id COLLATE "C", ts, gateway_id COLLATE "C", event COLLATE "C", state COLLATE "C"
ON CONFLICT DO NOTHING
"""


# A gateway's link state: link_since moves only when the state changes (a retained status heard
# again after a reconnect is the same state, not a new one).
_LINK_UPSERT = """
INSERT INTO gateway_status (gateway_id, online, link_since) VALUES (%s, %s, %s)
ON CONFLICT (gateway_id) DO UPDATE SET
    online = excluded.online,
    link_since = CASE WHEN gateway_status.online IS DISTINCT FROM excluded.online
                      THEN excluded.link_since ELSE gateway_status.link_since END
"""
_HEALTH_UPSERT = """
INSERT INTO gateway_status (gateway_id, health, health_at) VALUES (%s, %s, %s)
ON CONFLICT (gateway_id) DO UPDATE SET health = excluded.health, health_at = excluded.health_at
"""

#: A dead letter keeps this much of its payload, with the payload's full length and SHA-256.
DEAD_LETTER_PAYLOAD_MAX = 64 * 1024


#: A dead letter: (topic, reason, payload), and for a meter its gateway may not report, (meter_id, gateway_id).
DeadLetter = tuple[str, str, bytes] | tuple[str, str, bytes, str, str]
_DEAD_LETTER = (
    "INSERT INTO dead_letters (topic, reason, payload, payload_bytes, payload_sha256, meter_id, gateway_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def _dead_letter_row(letter: DeadLetter) -> tuple[str, str, bytes, int, bytes, str | None, str | None]:
    topic, reason, payload = letter[:3]
    meter_id, gateway_id = (letter[3], letter[4]) if len(letter) == 5 else (None, None)
    digest = hashlib.sha256(payload).digest()
    # a meter's readings refused for their gateway are kept whole, to be stored once it is assigned:
    # the collector built them from a valid message (at most 10,000 readings)
    kept = payload if meter_id is not None else payload[:DEAD_LETTER_PAYLOAD_MAX]
    return topic, reason, kept, len(payload), digest, meter_id, gateway_id


#: Readings older than this when stored are noted in ``late_readings`` (collector migration 0053), for
#: the next VEE round to reach back to: a round looks back two days, and runs hourly by default.
LATE_AFTER = timedelta(days=1)


def _late_since(oldest_ts: str | None) -> str | None:
    """``oldest_ts`` ("YYYY-MM-DDTHH:MM:SS", UTC) as an explicit UTC time when it is late, else None."""
    cutoff = (datetime.now(UTC) - LATE_AFTER).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{oldest_ts}Z" if oldest_ts is not None and oldest_ts < cutoff else None


@dataclass(frozen=True, slots=True)
class StoreResult:
    # readings the write sent to ``readings`` (not those it refused for their gateway: dead letters)
    written: int
    inserted: int  # new ones among them (a repeat is not; an actual replacing VEE's estimate is)
    new_meters: int  # rows of ``meters`` this write created (ON CONFLICT DO NOTHING's row count)
    conflicts: int = 0
    events_inserted: int = 0  # new ones among the events it wrote (not those refused for their gateway)
    # dead letters of readings and events from a gateway their meter is not assigned to: (topic, reason)
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def duplicates(self) -> int:
        """Readings written whose key was stored already: repeats, and conflicts."""
        return self.written - self.inserted


@dataclass(frozen=True, slots=True)
class _Reads:
    """A write's readings: parsed messages (held to their gateways), and COPY text of rows given as
    they are (``count`` readings of the meters ``row_meters``, the oldest at ``oldest_ts``)."""

    messages: Sequence[ParsedMessage]
    chunks: list[bytes] = field(default_factory=list)
    count: int = 0
    oldest_ts: str | None = None
    row_meters: frozenset[str] = frozenset()

    def meter_ids(self) -> set[str]:
        """The meters these readings are of (after :meth:`ReadingStore._held_to_gateways`: the
        meters of the readings kept)."""
        meters = set(self.row_meters)
        for message in self.messages:
            meters |= message.meter_ids
        return meters

    def chunks_count_oldest(self) -> tuple[list[bytes], int, str | None]:
        if not self.messages:
            return self.chunks, self.count, self.oldest_ts
        chunks = [*self.chunks, *(m.copy_data for m in self.messages)]
        count = self.count + sum(m.count for m in self.messages)
        oldest = min(m.oldest_ts for m in self.messages)
        return chunks, count, oldest if self.oldest_ts is None else min(oldest, self.oldest_ts)


def _meters_read(reads: _Reads, unseen: dict[str, str], known: dict[str, str] | None) -> set[str]:
    """The meters a write's readings are of: its messages', and its rows' (all in ``unseen`` or
    ``known``, as :meth:`ReadingStore.write` sorts them; a few more, of events, do no harm)."""
    meters = set(unseen) | set(known or ())
    for message in reads.messages:
        meters |= message.meter_ids
    return meters


def _event_payload(event: EventRow) -> bytes:
    """An event row as its message again (the same fields; their order and spacing may differ)."""
    meter_id, ts, name, _, detail, gateway_id, _ = event
    message = {"gateway_id": gateway_id, "event": name, "ts": ts, "meter_id": meter_id}
    return json.dumps(message | (json.loads(detail) if detail else {})).encode()


def copy_text(rows: Sequence[ReadingRow]) -> bytes:
    """``rows`` in COPY text format, in ``ROW_COLUMNS`` order (see the module docstring)."""
    null = "\\N"
    lines = [
        f"{m}\t{ts}\t{v}\t{null if f is None else repr(f)}\t{null if r is None else r}\t{{{','.join(a)}}}\t{g}\t{seq}\n"
        for m, ts, v, f, r, a, g, seq in rows
    ]
    return "".join(lines).encode()


# A time with a fraction of a second (":SS." then a digit), in COPY text: its order as text is not
# its order in time. (Another field matching, a gateway id "gw:10.5", only costs the slower sort.)
_FRACTION = re.compile(rb":[0-9]{2}\.[0-9]")


def _instant(ts: bytes) -> tuple[bytes, bytes]:
    """A contract timestamp's text (``YYYY-MM-DDTHH:MM:SS``, maybe a fraction of up to 6 digits,
    then ``Z`` or ``+00:00``) as a key that sorts as the instants do: its second, then its fraction
    to 6 digits (as text "07:00:00.5Z" sorts before "07:00:00Z", and ".51Z" before ".5Z")."""
    if ts[19:20] != b".":
        return ts[:19], b""
    return ts[:19], ts[20:].rstrip(b"Z").removesuffix(b"+00:00").ljust(6, b"0")


def _line_key(line: bytes) -> tuple[bytes, tuple[bytes, bytes]]:
    meter, ts, _ = line.split(b"\t", 2)
    return meter, _instant(ts)


def in_key_order(chunks: list[bytes]) -> bytes:
    """COPY text (of :func:`copy_text` or ``ParsedMessage.copy_data``), its lines in key order: meter
    ids byte by byte (PostgreSQL's ``COLLATE "C"``, whatever the database's collation), each meter's
    readings by time.

    Why: two transactions inserting the same keys of ``readings``' unique index wait on each other,
    and in different orders they deadlocked. VEE inserts its estimates in this order
    (collector/vee/runner.py, _write_estimates); ingest inserted its readings as they arrived:
    it inserted B 07:00 and waited (for C 07:00, another writer's), VEE inserted its A 07:00
    estimate and waited for B, ingest came to A and waited for VEE, and one side was rolled back.

    Whole seconds, the lines sort as bytes (C's sort, no key per line): the tab ending a meter id
    is below every character an identifier holds, and a time's text to the second sorts as the
    time does (two times of one second are one key, whether written ``Z`` or ``+00:00``). Byte
    order, not the database's collation, and not an ``ORDER BY`` from the staging table: both
    cost more (a 50,000-reading batch took 36% longer through staging and an INSERT … SELECT; a
    key per line, 85 ms of Python for it, held from the collector's other threads)."""
    data = b"".join(chunks)
    lines = data.splitlines(keepends=True)  # (no field holds a line break: see the module docstring)
    if _FRACTION.search(data) is None:
        lines.sort()
    else:
        lines.sort(key=_line_key)
    return b"".join(lines)  # (one write to the COPY: a write a line cost more than the sort)


class ReadingStore:
    """One connection's writer; not thread-safe (one per writer thread).

    Its waits are bounded (:mod:`collector.db`): a statement by ``statement_timeout_s``, a whole
    write by twice that, after which its connection is cut and the write fails (``OperationalError``).

    Readings of parsed messages and meter events are held to their meters' gateways
    (:mod:`collector.meter_gateways`) unless ``check_gateways`` is off; rows given to :meth:`write`
    are the caller's and are not. With ``assigned_only`` a meter no gateway is assigned to is not
    claimed by the first gateway heard: its readings and events are dead letters, replayed once it is
    assigned (``assign-meters --replay``). ``topic_root`` names the topic of a dead letter this makes.
    ``look_after_s``: a write that has waited this long has its session looked at from a second
    connection, and its connection cut if the database waits on it (:mod:`collector.dead_link_look`);
    None: only the write's deadline bounds it.
    """

    def __init__(
        self,
        database_url: str,
        statement_timeout_s: float = db.STATEMENT_TIMEOUT_S,
        *,
        check_gateways: bool = True,
        assigned_only: bool = False,
        topic_root: str = "aquami/v1",
        look_after_s: float | None = None,
    ):
        if assigned_only and not check_gateways:
            raise ValueError("assigned_only needs check_gateways: without the check every meter is taken")
        self.database_url = database_url
        self.statement_timeout_s = statement_timeout_s
        self.check_gateways = check_gateways
        self.assigned_only = assigned_only
        self.topic_root = topic_root
        self.look_after_s = look_after_s
        self._conn: psycopg.Connection | None = None
        self._session: dead_link_look.Session | None = None  # the connection's, on the server
        self._known_meters: set[str] = set()
        # meters whose ``has_readings`` this process's committed writes set (or found) true
        self._read_meters: set[str] = set()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = conn = db.connect(self.database_url, self.statement_timeout_s)
            # bounded like a write: a peer silent here held the writer for ever (collector.db.connect)
            with db.deadline(conn, db.setup_bound(self.statement_timeout_s)):
                conn.execute(_STAGING)
                conn.execute(_EVENTS_STAGING)
                self._session = dead_link_look.session_of(conn) if self.look_after_s is not None else None
                conn.commit()
        return self._conn

    @property
    def connected(self) -> bool:
        """Whether a write would use a connection already open (one that may have died since)."""
        return self._conn is not None and not self._conn.closed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def check(self, answer_within_s: float) -> None:
        """Ask the database for an answer on the writer's connection (a new one if it has none):
        ``OperationalError`` when none comes within ``answer_within_s``. An idle writer's look at a
        link that may have died since its last write (collector.service.Collector)."""
        conn = self._connection()
        with db.deadline(conn, answer_within_s):
            conn.execute("SELECT 1")
            conn.rollback()  # no transaction left open: the server would end the session

    def write(
        self,
        rows: Sequence[ReadingRow],
        dead_letters: Sequence[DeadLetter] = (),
        events: Sequence[EventRow] = (),
        statuses: Sequence[GatewayStatus] = (),
    ) -> StoreResult:
        """Store rows, events, gateways' statuses and dead letters (topic, reason, payload) in one transaction."""
        unseen: dict[str, str] = {}
        known: dict[str, str] = {}  # rows are not held to gateways: their known meters are looked up
        for row in rows:
            (known if row[0] in self._known_meters else unseen).setdefault(row[0], row[6])
        oldest = min((row[1][:19] for row in rows), default=None)
        chunks = [copy_text(rows)] if rows else []
        reads = _Reads([], chunks, len(rows), oldest, frozenset(unseen) | frozenset(known))
        return self._write(reads, unseen, dead_letters, events, statuses, known)

    def write_messages(
        self,
        messages: Sequence[ParsedMessage],
        dead_letters: Sequence[DeadLetter] = (),
        events: Sequence[EventRow] = (),
        statuses: Sequence[GatewayStatus] = (),
    ) -> StoreResult:
        """Like :meth:`write`, for parsed messages: their COPY text is already built."""
        known = self._known_meters
        unseen: dict[str, str] = {}
        # Held to their gateways, a known meter gone from ``meters`` trips meter_gateways' foreign
        # key (its claim is cascaded away with it); not held, nothing would: they are looked up.
        unchecked: dict[str, str] | None = None if self.check_gateways else {}
        for message in messages:
            new = message.meter_ids - known
            if new:
                for meter_id in new:
                    unseen.setdefault(meter_id, message.gateway_id)
            if unchecked is not None:
                for meter_id in message.meter_ids & known:
                    unchecked.setdefault(meter_id, message.gateway_id)
        return self._write(_Reads(messages), unseen, dead_letters, events, statuses, unchecked or {})

    def _write(
        self,
        reads: _Reads,
        unseen: dict[str, str],
        dead_letters: Sequence[DeadLetter],
        events: Sequence[EventRow],
        statuses: Sequence[GatewayStatus] = (),
        known: dict[str, str] | None = None,
    ) -> StoreResult:
        """Readings (meters not known yet: ``unseen``, with the gateway first heard), events,
        gateways' statuses and dead letters, in one transaction; a note in ``late_readings`` when
        the oldest reading is late. ``known``: meters of the readings this process has registered
        that no gateway check covers, registered again if they are gone from ``meters``."""
        for event in events:
            if event[0] is not None and event[0] not in self._known_meters:
                unseen.setdefault(event[0], event[5])
        conn = self._connection()
        with self._deadline(conn):
            return self._write_in(conn, reads, unseen, dead_letters, events, statuses, known or {})

    def _deadline(self, conn: psycopg.Connection) -> AbstractContextManager[None]:
        """A write's bound: its deadline (twice the statement timeout), and, with ``look_after_s``,
        the look that cuts it sooner where the database waits on a dead link."""
        session, look_after_s = self._session, self.look_after_s
        if session is None or look_after_s is None:
            return db.deadline(conn, 2 * self.statement_timeout_s)
        url = self.database_url
        return dead_link_look.deadline_looking(
            conn,
            2 * self.statement_timeout_s,
            look_after_s,
            lambda: dead_link_look.waits_on_a_dead_link(url, session, look_after_s),
        )

    def _write_in(
        self,
        conn: psycopg.Connection,
        reads: _Reads,
        unseen: dict[str, str],
        dead_letters: Sequence[DeadLetter],
        events: Sequence[EventRow],
        statuses: Sequence[GatewayStatus] = (),
        known: dict[str, str] | None = None,
    ) -> StoreResult:
        inserted = new_meters = conflicts = events_inserted = 0
        refused: list[DeadLetter] = []
        read: set[str] = set()
        try:
            with conn.cursor() as cur:
                if reads.count or reads.messages:  # a person's correction of these meters waits (meter_turns)
                    ingest_takes_turns(cur, _meters_read(reads, unseen, known))
                if known:
                    unseen = {**unseen, **self._gone(cur, known)}
                if self.check_gateways:
                    reads, events, refused, unseen, new_meters = self._held_to_gateways(cur, reads, events, unseen)
                    dead_letters = [*dead_letters, *refused]
                else:
                    if unseen:
                        new_meters = self._register_meters(cur, unseen)
                        meter_gateways.claim(cur, unseen)  # not checked, but assigned: the check can be turned on later
                chunks, count, oldest_ts = reads.chunks_count_oldest()
                if count:
                    inserted, conflicts = self._write_readings(cur, chunks, count)
                    read = self._mark_read(cur, reads.meter_ids(), unseen)
                    since = _late_since(oldest_ts) if inserted else None  # a redelivery changed nothing
                    if since is not None:
                        cur.execute("INSERT INTO late_readings (since) VALUES (%s::timestamptz)", (since,))
                if events:
                    with cur.copy(f"COPY events_staging ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                        for event in events:
                            copy.write_row(event)
                    cur.execute(_EVENTS_NEW_METERS)
                    new_meters += cur.rowcount
                    cur.execute(_EVENTS_MERGE)
                    events_inserted = cur.rowcount
                for status in statuses:  # in arrival order: the newest of each gateway stays
                    if status.online is not None:
                        cur.execute(_LINK_UPSERT, (status.gateway_id, status.online, status.received_at))
                    else:
                        cur.execute(_HEALTH_UPSERT, (status.gateway_id, Jsonb(status.health), status.received_at))
                if dead_letters:
                    cur.executemany(_DEAD_LETTER, [_dead_letter_row(letter) for letter in dead_letters])
            conn.commit()
        except BaseException as error:
            if not conn.closed:
                conn.rollback()
            if isinstance(error, psycopg.errors.ForeignKeyViolation):
                # a meter this process knows is gone from ``meters`` (deleted, or the database emptied
                # under a running collector): its claim refused the whole message; the caller's retry,
                # message by message, registers every meter again
                self._known_meters.clear()
                self._read_meters.clear()
            raise
        self._known_meters.update(unseen)
        self._read_meters.update(read)
        return StoreResult(
            written=count,
            inserted=inserted,
            new_meters=new_meters,
            conflicts=conflicts,
            events_inserted=events_inserted,
            refused=tuple((letter[0], letter[1]) for letter in refused),
        )

    def _held_to_gateways(
        self, cur: psycopg.Cursor[Any], reads: _Reads, events: Sequence[EventRow], unseen: dict[str, str]
    ) -> tuple[_Reads, Sequence[EventRow], list[DeadLetter], dict[str, str], int]:
        """The readings and events their gateways may report, a dead letter for each meter of a
        message (or each event) from a gateway the meter is not assigned to (one query a batch), the
        meters of ``unseen`` registered, and how many of them were new.

        A meter is registered before its first gateway heard claims it (the claim's foreign key).
        With ``assigned_only`` a meter no gateway is assigned to is neither claimed nor registered:
        a gateway with the broker's credentials made up meter ids, each was a ``meters`` row (no
        reading, no claim) that the care desk and billing list; its letter is all that is kept, and
        ``assign-meters`` registers it. A meter of rows given to :meth:`write` is registered (not
        claimed) all the same: its readings are stored, and before, an event of it refused in the
        same write left them of a meter ``meters`` did not hold."""
        heard: list[tuple[Iterable[str], str]] = [(m.meter_ids, m.gateway_id) for m in reads.messages]
        heard += [((e[0],), e[5]) for e in events if e[0] is not None]
        first = meter_gateways.first_heard(heard)
        assigned = meter_gateways.current(cur, list(first)) if first else {}
        unclaimed = {m: g for m, g in first.items() if m not in assigned}
        if self.assigned_only:  # the meters of rows given to write() are not held: registered
            unseen = {m: g for m, g in unseen.items() if m not in unclaimed or m in reads.row_meters}
        new_meters = self._register_meters(cur, unseen) if unseen else 0
        if unclaimed and not self.assigned_only:
            assigned |= meter_gateways.claim(cur, unclaimed)  # claimed by us, or by another collector first
        if not heard:
            return reads, events, [], unseen, new_meters
        now = datetime.now(UTC)

        def measured_after_move(meter_id: str, gateway: str, ts: str) -> bool:
            """Whether a reading or event of a gateway the meter moved away from is refused: measured
            at or after the move, or arriving after the handover (meter_gateways.handed_over)."""
            until = meter_gateways.handed_over(assigned, meter_id, gateway, now)
            return until is None or datetime.fromisoformat(ts) >= until

        def refusing(refused: set[str], gateway: str) -> Callable[[str, str], bool]:
            return lambda meter_id, ts: meter_id in refused and measured_after_move(meter_id, gateway, ts)

        letters: list[DeadLetter] = []
        kept_messages: list[ParsedMessage] = []
        for message in reads.messages:
            gateway = message.gateway_id
            refused = set(meter_gateways.refused(message.meter_ids, gateway, assigned))
            if not refused:
                kept_messages.append(message)
                continue
            kept, split = without_readings(message, refusing(refused, gateway))
            if kept is not None:
                kept_messages.append(kept)
            topic = f"{self.topic_root}/{gateway}/reads"
            for meter_id, payload in split:
                letters.append((topic, meter_gateways.refusal(meter_id, gateway, assigned), payload, meter_id, gateway))
        kept_events: list[EventRow] = []
        for event in events:
            meter, gateway = event[0], event[5]
            if (
                meter is None
                or meter_gateways.reports(assigned, meter, gateway)
                or not measured_after_move(meter, gateway, event[1])
            ):
                kept_events.append(event)
                continue
            reason = meter_gateways.refusal(meter, gateway, assigned)
            letters.append((f"{self.topic_root}/{gateway}/events", reason, _event_payload(event), meter, gateway))
        if not letters:
            return reads, events, [], unseen, new_meters
        # only the messages are held to gateways: the rows given to write(), and their meters (to be
        # marked as read), are kept as they are
        kept_reads = replace(reads, messages=kept_messages)
        return kept_reads, kept_events, letters, unseen, new_meters

    @staticmethod
    def _gone(cur: psycopg.Cursor[Any], known: dict[str, str]) -> dict[str, str]:
        """The meters of ``known`` (meter: gateway) that ``meters`` no longer holds: deleted, or the
        database emptied under a running collector. One query, of ``meters``' primary key (5-6 ms for
        5,000 meters of 105,000), and one more when some are gone."""
        ids = list(known)
        cur.execute(_STILL_THERE, (ids,))
        row = cur.fetchone()
        if row is not None and row[0] == len(ids):
            return {}
        cur.execute(_GONE, (ids,))
        return {meter_id: known[meter_id] for (meter_id,) in cur.fetchall()}

    def _register_meters(self, cur: psycopg.Cursor[Any], unseen: dict[str, str]) -> int:
        """Record meters this process has not seen (unknown ones as unregistered), as having no
        readings yet (:meth:`_mark_read` marks those whose readings are stored); how many were new.
        ``last_gateway_id`` is the gateway a meter was first heard from, never updated here (an
        UPDATE per meter per batch, and the last to arrive is not the latest read): the meters API
        names the latest reading's gateway. In byte order of meter ids (:data:`_REGISTER_METERS`)."""
        cur.execute(_REGISTER_METERS, (list(unseen), list(unseen.values())))
        return cur.rowcount

    def _mark_read(self, cur: psycopg.Cursor[Any], stored: set[str], unseen: dict[str, str]) -> set[str]:
        """Set ``has_readings`` of the meters of the readings just written (``stored``: each now has
        one in ``readings``, new or the same key's), where this process has not already: the meters
        API and VEE look for a meter's reads only where it is set (collector migration 0067). The
        meters it was set for, to remember once committed.

        Only these: before, every meter a write registered was marked, its readings stored or not
        (all refused for their gateway, a neighbour's meter overheard), and so was a meter
        registered before it was heard. ``unseen`` are registered again by this write (perhaps
        deleted since this process marked them): looked at again."""
        mark = {m for m in stored if m not in self._read_meters} | (stored & unseen.keys())
        if mark:
            cur.execute(
                "UPDATE meters SET has_readings = true WHERE meter_id = ANY(%s) AND NOT has_readings", (list(mark),)
            )
        return mark

    def _write_readings(self, cur: psycopg.Cursor[Any], chunks: list[bytes], count: int) -> tuple[int, int]:
        """(inserted, conflicts): the fast path, or the careful one when a key is already stored.
        Either inserts in (meter, time) order (:func:`in_key_order`)."""
        chunks = [in_key_order(chunks)]
        cur.execute("SAVEPOINT fast_copy")
        try:
            with cur.copy(f"COPY readings ({', '.join(ROW_COLUMNS)}) FROM STDIN") as copy:
                for chunk in chunks:
                    copy.write(chunk)
            cur.execute("RELEASE SAVEPOINT fast_copy")
            return count, 0
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT fast_copy")
        with cur.copy(f"COPY readings_staging ({', '.join(ROW_COLUMNS)}) FROM STDIN") as copy:
            for chunk in chunks:
                copy.write(chunk)
        cur.execute(_LOCK_ESTIMATES)
        cur.execute(_MERGE)
        inserted = cur.rowcount
        conflicts = 0
        if inserted < count:
            cur.execute(SAY_WHO, ("ingest", "the actual reading arrived"))  # for reading_history
            cur.execute(_REPLACE_ESTIMATES)
            inserted += cur.rowcount
            cur.execute(_CONFLICTS)
            conflicts = cur.rowcount
        return inserted, conflicts
