"""Editing: a person corrects or supplies a reading, with a reason; nothing is overwritten unseen.

The ``readings_keep_history`` trigger (collector migration 0013) copies the version being replaced
into ``reading_history`` with who (the new ``quality_by``), when and why, so the original actual
reading is always the first entry of a key's history.

An edit or substitution refreshes at once, in its own transaction, the consumption of the days its
read closes an interval in (the read's own, and the next read's): NEM12 marks those hours with the
person's flag (F16, S18) from the reads themselves, and showed the values from before the edit until
the next VEE round; for reads older than a round's reach (35 days), for good. Only this meter's
consumption is refreshed: the fleet's whole days were redone for one person's edit.

A person's value that would put the register out of order with the meter's stored measured reads
either side (collector.vee.register_order) is refused, :class:`OutOfSequence`, and nothing written,
unless the caller says it is meant (``out_of_sequence_confirmed``): a typo of 1.000 for 480.937 was
stored, and VEE and detection made a meter replacement and a burst of it. A value with no measured
read after it (the meter's newest) is refused the same way when the water since the read before it
is more than the meter's maximum flow passes, as VEE judges ``over_max_flow``, by the settings VEE
last ran with (collector.vee.settings_in_use) (:class:`FasterThanTheMeter`): 4809.37 for 480.937
is in order, and no later read shows it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row, tuple_row

from aquami.contracts.reads import utc_iso
from collector.meter_turns import person_takes_turns
from collector.vee.config import VeeConfig
from collector.vee.register_order import (
    FasterThanTheMeter,
    MaxFlow,
    Neighbour,
    OutOfSequence,
    check_in_order,
    check_newest_within_max_flow,
)
from collector.vee.settings_in_use import settings_in_use

T = TypeVar("T")

__all__ = [
    "FasterThanTheMeter",
    "NoSuchReading",
    "OutOfSequence",
    "edit_reading",
    "reading_history",
    "substitute_reading",
]


class NoSuchReading(LookupError):
    """The reading to correct is not stored. Its own class, so that the API answers it 404 and
    nothing else: caught as LookupError, a KeyError from a bug was a 404 too (its detail the key)."""


#: The measured read just before / after a time (VEE's estimates are estimated again around it).
_NEIGHBOUR = """
SELECT ts, volume_m3, quality FROM readings
WHERE meter_id = %(m)s AND ts {op} %(ts)s AND quality <> 'estimated'
ORDER BY ts {order} LIMIT 1
"""


def _check(by: str, reason: str, volume_m3: Decimal, ts: datetime) -> None:
    if not by.strip():
        raise ValueError("an edit needs the name of the person making it")
    if not reason.strip():
        raise ValueError("an edit needs a reason")
    if not isinstance(volume_m3, Decimal) or volume_m3 < 0:
        raise ValueError(f"volume_m3 must be a non-negative Decimal, got {volume_m3!r}")
    if ts.tzinfo is None:
        raise ValueError("naive datetime: aquami times are timezone-aware UTC")


#: The qualities a supplied reading replaces; any other is edited instead.
_GIVES_WAY = ["estimated", "substituted"]
_ALREADY = "{meter_id!r} has a reading at {ts} already; edit it instead"


def _stored_quality(conn: psycopg.Connection, meter_id: str, ts: datetime) -> str | None:
    """The quality of the reading stored at ``ts`` (None: none), locked until the transaction ends."""
    with conn.cursor(row_factory=tuple_row) as cur:  # (the server's connections answer dicts)
        row = cur.execute(
            "SELECT quality FROM readings WHERE meter_id = %s AND ts = %s FOR UPDATE", (meter_id, ts)
        ).fetchone()
    return None if row is None else str(row[0])


def _neighbours(conn: psycopg.Connection, meter_id: str, ts: datetime) -> tuple[Neighbour | None, Neighbour | None]:
    found = []
    with conn.cursor(row_factory=tuple_row) as cur:
        for op, order in (("<", "DESC"), (">", "ASC")):
            row = cur.execute(_NEIGHBOUR.format(op=op, order=order), {"m": meter_id, "ts": ts}).fetchone()
            found.append(None if row is None else Neighbour(*row))
    return found[0], found[1]


@contextlib.contextmanager
def _a_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """The caller's transaction, or, on an autocommit connection outside one, one of the edit's own:
    its turns are held until the transaction ends (:func:`_in_turns`), and its savepoint needs one.
    Not psycopg's ``transaction()`` on a connection that is not autocommit: that commits, where the
    caller's transaction is the caller's to commit or roll back."""
    if conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        with conn.transaction():
            yield
    else:
        yield


def _in_turns(conn: psycopg.Connection, meter_id: str, write: Callable[[], T]) -> T:
    """``write`` once the meter's other edits in progress and the collector's batches storing its
    reads are done (collector.meter_turns), holding them off until the transaction ends: two people's
    values for neighbouring reads of one meter are each checked against the other's, and a read
    arriving meanwhile is either seen by the check or stored after the value. The consumption
    refreshes' turn is held too on return, taken without holding arriving reads back while a VEE
    round's refresh holds it (:func:`collector.meter_turns.person_takes_turns`): ``write`` may run
    more than once, each time from the start, and must write nothing outside the transaction."""
    return person_takes_turns(conn, meter_id, write)


def _max_flow(conn: psycopg.Connection, meter_id: str, vee: VeeConfig) -> MaxFlow:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT max_flow_m3h FROM meters WHERE meter_id = %s", (meter_id,)).fetchone()
    return MaxFlow.of(None if row is None else row[0], vee)


def _check_order(
    conn: psycopg.Connection, meter_id: str, ts: datetime, volume_m3: Decimal, confirmed: bool
) -> str | None:
    """Raise :class:`OutOfSequence` if ``volume_m3`` at ``ts`` is out of order with the meter's
    measured neighbours, or :class:`FasterThanTheMeter` if it is the newest and further above the
    read before it than the meter's maximum flow allows; neither when ``confirmed``, which returns
    the check the value overrides (its ``check``: what the reading records as ``quality_overrode``),
    None when it passes them all (confirmed or not, it then overrides nothing)."""
    before, after = _neighbours(conn, meter_id, ts)
    try:
        check_in_order(meter_id, ts, volume_m3, before, after)
        if after is None:  # judged by the settings VEE itself runs with (the collector's, not VeeConfig's defaults)
            vee = settings_in_use(conn)
            check_newest_within_max_flow(meter_id, ts, volume_m3, before, _max_flow(conn, meter_id, vee), vee)
    except OutOfSequence as refused:
        if not confirmed:
            raise
        return refused.check
    return None


def edit_reading(
    conn: psycopg.Connection,
    meter_id: str,
    ts: datetime,
    volume_m3: Decimal,
    *,
    by: str,
    reason: str,
    by_key_id: str | None = None,
    out_of_sequence_confirmed: bool = False,
) -> None:
    """Correct a stored reading's register; it becomes ``edited``. :class:`NoSuchReading` if there is none;
    :class:`OutOfSequence` (nothing written) if the value puts the register out of order with its
    measured neighbours, unless ``out_of_sequence_confirmed``: then the reading records the check
    overridden (``quality_overrode``) beside who (``quality_by``) and when (``received_at``).
    ``by_key_id``: the id of the API key ``by`` names (two keys may carry one name)."""
    _check(by, reason, volume_m3, ts)

    def write() -> None:
        if _stored_quality(conn, meter_id, ts) is None:
            raise NoSuchReading(f"no reading of {meter_id!r} at {utc_iso(ts)}")
        overrode = _check_order(conn, meter_id, ts, volume_m3, out_of_sequence_confirmed)
        conn.execute(
            "UPDATE readings SET volume_m3 = %s, quality = 'edited', quality_by = %s, quality_by_key_id = %s, "
            "quality_reason = %s, quality_overrode = %s, received_at = now() WHERE meter_id = %s AND ts = %s",
            (volume_m3, by, by_key_id, reason, overrode, meter_id, ts),
        )
        _note_for_vee(conn, ts)

    with _a_transaction(conn):
        _in_turns(conn, meter_id, write)
        _refresh_consumption(conn, meter_id, ts)


# A person's read, in a gap or in place of a reading that gives way to it (_GIVES_WAY: an estimate, or a
# person's read supplied before).
_SUBSTITUTE = """
INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_by_key_id, quality_reason,
                      quality_overrode)
VALUES (%(m)s, %(ts)s, %(v)s, 'substituted', %(by)s, %(key)s, %(why)s, %(overrode)s)
ON CONFLICT (meter_id, ts) DO UPDATE
SET volume_m3 = EXCLUDED.volume_m3, flow_m3h = NULL, reverse_volume_m3 = NULL,
    quality = 'substituted', quality_by = EXCLUDED.quality_by, quality_by_key_id = EXCLUDED.quality_by_key_id,
    quality_reason = EXCLUDED.quality_reason, quality_overrode = EXCLUDED.quality_overrode, received_at = now()
WHERE readings.quality = ANY(%(gives_way)s)
RETURNING 1
"""


def substitute_reading(
    conn: psycopg.Connection,
    meter_id: str,
    ts: datetime,
    volume_m3: Decimal,
    *,
    by: str,
    reason: str,
    by_key_id: str | None = None,
    out_of_sequence_confirmed: bool = False,
) -> None:
    """Supply a reading a person obtained otherwise (a site visit, a photo): ``substituted``.

    Replaces an estimate at the same time (the estimate goes to history); refuses to hide an
    actual or edited reading, which must be edited instead. :class:`OutOfSequence` as
    :func:`edit_reading`.
    """
    _check(by, reason, volume_m3, ts)

    def write() -> None:
        if _stored_quality(conn, meter_id, ts) not in (None, *_GIVES_WAY):
            raise ValueError(_ALREADY.format(meter_id=meter_id, ts=utc_iso(ts)))
        overrode = _check_order(conn, meter_id, ts, volume_m3, out_of_sequence_confirmed)
        row = conn.execute(
            _SUBSTITUTE,
            {
                "m": meter_id,
                "ts": ts,
                "v": volume_m3,
                "by": by,
                "key": by_key_id,
                "why": reason,
                "overrode": overrode,
                "gives_way": _GIVES_WAY,
            },
        ).fetchone()
        if row is None:  # (written in between)
            raise ValueError(_ALREADY.format(meter_id=meter_id, ts=utc_iso(ts)))
        # perhaps the meter's first: the meters API looks for its latest from now on (migration 0067)
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = %s AND NOT has_readings", (meter_id,))
        _note_for_vee(conn, ts)

    with _a_transaction(conn):
        _in_turns(conn, meter_id, write)
        _refresh_consumption(conn, meter_id, ts)


def _note_for_vee(conn: psycopg.Connection, ts: datetime) -> None:
    """A person's value is new to VEE, as a read arriving now is: ``received_at`` is now (so the
    next round estimates again the gap's other estimates around it: VEE re-estimates those whose
    measured neighbours arrived after them), and a note in ``late_readings`` has that round reach
    back to it and refresh its consumption, however old (up to the round's reach)."""
    conn.execute("INSERT INTO late_readings (since) VALUES (%s)", (ts,))


def _refresh_consumption(conn: psycopg.Connection, meter_id: str, ts: datetime) -> None:
    """Consumption of this meter (collector migration 0065's ``refresh_meter_consumption``) of the
    local days holding the interval the read closes (it ends at ``ts``) and the one the next read
    closes. The rest of the gap an edited estimate sat in is estimated again by the next round,
    which refreshes the meter's consumption from the gap's opening read."""
    conn.execute(
        "SELECT refresh_meter_consumption(ARRAY[%(m)s], ARRAY[%(ts)s - interval '1 microsecond'], "
        "greatest(%(ts)s, (SELECT min(ts) FROM readings WHERE meter_id = %(m)s AND ts > %(ts)s)))",
        {"m": meter_id, "ts": ts},
    )


def reading_history(conn: psycopg.Connection, meter_id: str, ts: datetime) -> list[dict[str, Any]]:
    """Every earlier version of a reading, oldest first (the first is what arrived, if it arrived)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT volume_m3, flow_m3h, reverse_volume_m3, alarms, quality, quality_by, quality_by_key_id, "
            "quality_reason, quality_overrode, superseded_at, superseded_by, superseded_by_key_id, superseded_reason, "
            "superseded_quality, superseded_overrode "
            "FROM reading_history WHERE meter_id = %s AND ts = %s ORDER BY id",
            (meter_id, ts),
        )
        return cur.fetchall()
