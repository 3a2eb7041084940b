"""The collector inserts a batch's readings in (meter, time) order, meter ids byte by byte (``COLLATE
"C"``) whatever the database's collation, as VEE inserts its estimates: on real connections to the
real database, a real VEE batch.

Before, ingest inserted its readings in the order they arrived (its fast path's COPY straight into
``readings``, or its merge from the staging table), and VEE its estimates in (meter, time) order.
Two transactions inserting the same keys of ``readings``' unique index in different orders wait on
each other: ingest inserted B 07:00 and waited (for C 07:00, held by a third session), VEE inserted
its A 07:00 estimate and waited for B 07:00, then ingest came to A 07:00 and waited for VEE. A
deadlock: PostgreSQL rolled back one side (ingest's write, counted in ``write_conflicts`` and tried
again, or VEE's batch, run again), nothing lost but a batch's work thrown away."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from collector.batch_parser import ParsedMessage, ReadingRow, parse_reads_message
from collector.migrate import migrate
from collector.store import ReadingStore, copy_text, in_key_order
from collector.vee.runner import run_vee
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread
from tests.services import drop_database, with_database

DAY = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)
MISSED = DAY + 7 * HOUR  # the meters' 07:00 read, estimated by VEE while ingest stores it
HELD = "ORD-C"  # its 07:00 held by a third session
# Per database collation, three meters' 07:00 reads in the order they arrive. ICU's English
# collation sorts "ord-a" first, byte order last (and "ORD-B" before "ORD-C" in both).
ARRIVAL = {"C": ("ORD-B", HELD, "ORD-A"), "ICU en": ("ORD-B", HELD, "ord-a")}


@pytest.fixture(params=list(ARRIVAL))
def collated_database(request: pytest.FixtureRequest, timescale_admin_url: str) -> Iterator[tuple[str, str]]:
    """(collation, URL): the test database (collation C), or one of ICU's English collation (where
    "ord-a" sorts before "ORD-B"), migrated for the test and dropped after it."""
    if request.param == "C":
        yield "C", request.getfixturevalue("migrated_database_url")
        return
    name = f"aquami_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(timescale_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C'").format(
                sql.Identifier(name)
            )
        )
    url = with_database(timescale_admin_url, name)
    try:
        migrate(url)
        yield request.param, url
    finally:
        drop_database(timescale_admin_url, url)


def _volume(meter: str, ts: datetime) -> str:
    return f"{100 + 10 * ord(meter[-1]) + (ts - DAY) / HOUR * 0.01:.3f}"


def _seed(url: str, meters: tuple[str, ...]) -> None:
    """Three hourly meters read 00:00 to 12:00 on time but for 07:00 (a third session stores the
    third's while ingest and VEE come)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO meters (meter_id, registered, read_interval_s, has_readings) "
            "SELECT m, true, 3600, true FROM unnest(%s::text[]) m",
            (list(meters),),
        )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as cp:
            for meter in meters:
                for k in range(13):
                    ts = DAY + k * HOUR
                    if ts != MISSED:
                        cp.write_row((meter, ts, _volume(meter, ts), ts))


def _row(meter: str, ts: datetime, seq: int = 1) -> ReadingRow:
    return (meter, ts.isoformat(), _volume(meter, ts), None, None, [], "gw-ord", seq)


def _ingest(url: str, rows: list[ReadingRow]) -> Any:
    store = ReadingStore(url, check_gateways=False)
    try:
        return store.write(rows)
    finally:
        store.close()


def _vee_batch(url: str, meters: list[str]) -> Any:
    with psycopg.connect(url) as conn:
        report = run_vee(conn, DAY, DAY + 13 * HOUR, now=DAY + 14 * HOUR, meters=meters)
        conn.commit()
        return report


@pytest.mark.parametrize("redelivered", [False, True], ids=["fast path", "merge from staging"])
def test_ingest_storing_reads_vee_estimates_meanwhile_does_not_deadlock(
    collated_database: tuple[str, str], caplog: pytest.LogCaptureFixture, redelivered: bool
) -> None:
    """A third session holds C 07:00 (its insert not committed) while ingest stores B, C and A
    07:00 as they arrived (the merge path: behind a redelivered 06:00 read its COPY stops at),
    then a VEE batch of A and B comes to estimate their 07:00. Then the third session lets go.
    (In the database of ICU's English collation, A is "ord-a": first in it, last byte by byte.)

    Before: ingest had inserted B and waited for C; VEE inserted A's estimate and waited for B;
    ingest went on to A and waited for VEE: a deadlock, one side rolled back. Now both insert in
    one order, meter ids byte by byte: in the database of collation C, ingest inserts A, B, then
    waits for C, and VEE waits for A behind it; in the other, ingest inserts B and waits for C,
    and VEE waits for B ("ord-a" after it: in its collation's order, VEE deadlocked with ingest as
    before). Then VEE finds both 07:00 reads stored and estimates nothing: no error, no batch run
    again, every read the meters' own."""
    caplog.set_level(logging.INFO, logger="collector.vee.runner")
    collation, url = collated_database
    meters = ARRIVAL[collation]
    _seed(url, meters)
    arrived = [_row(meter, MISSED) for meter in meters]
    if redelivered:  # (first in byte order and in arrival order: the COPY stops at it either way)
        arrived.insert(0, _row(min(meters), MISSED - HOUR))
    with psycopg.connect(url) as holder:
        holder.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, 1)", (HELD, MISSED))
        ingest, ingested = _in_thread(lambda: _ingest(url, arrived))
        _waiting_on_rows(url, 1)
        vee, ran = _in_thread(lambda: _vee_batch(url, [m for m in meters if m != HELD]))
        _waiting_on_rows(url, 2)
        holder.rollback()
    ingest.join(60)
    vee.join(60)
    assert not ingest.is_alive() and not vee.is_alive()
    errors = [(side, done.get("error")) for side, done in (("ingest", ingested), ("vee", ran)) if "error" in done]
    assert errors == []
    conflicts = [r.getMessage() for r in caplog.records if "conflicted" in r.getMessage()]
    assert conflicts == []
    assert ingested["result"].inserted == 3
    assert ran["result"].estimates == 0
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            'SELECT meter_id, volume_m3::text, quality FROM readings WHERE ts = %s ORDER BY meter_id COLLATE "C"',
            (MISSED,),
        ).fetchall()
    assert stored == [(m, _volume(m, MISSED), "actual") for m in sorted(meters)]


# Meter ids and times whose order as text is not their order in every collation or in time: mixed
# case, the punctuation the contract allows, fractions of a second, both ways of writing UTC.
_METERS = ["m-10", "M.2", "M10", "m:1", "Ma", "mB", "0-9", "A1", "a-2", "Z"]
_TIMES = ["07:00:00Z", "07:00:00.5Z", "07:00:00.25+00:00", "06:59:59+00:00", "07:00:01Z", "08:00:00.000001Z"]


def _shuffled_rows(seq: int) -> list[ReadingRow]:
    rows: list[ReadingRow] = [
        (meter, f"2026-03-02T{time}", f"{100 + i * 0.001:.3f}", None, None, [], "gw-ord", seq)
        for i, (meter, time) in enumerate((m, t) for m in _METERS for t in _TIMES)
    ]
    random.Random(seq).shuffle(rows)
    return rows


def _as_messages(rows: list[ReadingRow]) -> list[ParsedMessage]:
    """``rows`` as the collector's parsed messages, a few readings each, in their order."""
    parsed = []
    for start in range(0, len(rows), 7):
        readings = [{"meter_id": m, "ts": ts, "volume_m3": float(v)} for m, ts, v, *_ in rows[start : start + 7]]
        payload = {
            "gateway_id": "gw-ord",
            "batch_seq": rows[0][7],
            "sent_at": "2026-03-02T09:00:00Z",
            "readings": readings,
        }
        message = parse_reads_message("aquami/v1/gw-ord/reads", json.dumps(payload).encode(), DAY + 9 * HOUR)
        assert isinstance(message, ParsedMessage), message
        parsed.append(message)
    return parsed


@pytest.mark.parametrize("redelivered", [False, True], ids=["fast path", "merge from staging"])
@pytest.mark.parametrize("as_messages", [False, True], ids=["rows", "parsed messages"])
def test_a_batch_is_inserted_in_meter_then_time_order_of_the_database(
    migrated_database_url: str, redelivered: bool, as_messages: bool
) -> None:
    """60 readings arriving shuffled are inserted (their places in the table's heap, ``ctid``, in
    one chunk) in the order PostgreSQL sorts (meter_id COLLATE "C", ts): meter ids byte by byte, and
    time, not the text of the times. The same through the merge from staging, which a stored key
    sends a batch to, and for parsed messages (what the collector, its one-by-one retry and a
    replay write)."""
    url = migrated_database_url
    rows = _shuffled_rows(seq=7)
    store = ReadingStore(url, check_gateways=False)
    try:
        if redelivered:
            meter, ts, volume, flow, reverse, alarms, gateway, _ = rows[len(rows) // 2]
            store.write([(meter, ts, volume, flow, reverse, alarms, gateway, 6)])  # stored before, as batch 6
        result = store.write_messages(_as_messages(rows)) if as_messages else store.write(rows)
    finally:
        store.close()
    assert result.inserted == len(rows) - redelivered
    with psycopg.connect(url) as conn:
        in_heap = conn.execute("SELECT meter_id, ts FROM readings WHERE batch_seq = 7 ORDER BY ctid").fetchall()
        in_order = conn.execute(
            'SELECT meter_id, ts FROM readings WHERE batch_seq = 7 ORDER BY meter_id COLLATE "C", ts'
        ).fetchall()
        arrival = conn.execute(
            "SELECT m, ts::timestamptz FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS a(m, ts, n) ORDER BY n",
            ([r[0] for r in rows], [r[1] for r in rows]),
        ).fetchall()
    assert arrival != in_order  # (the shuffle is not already in order)
    assert len(in_heap) == len(rows) - redelivered
    assert in_heap == in_order


_IDENTIFIER = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,11}", fullmatch=True)
_TIME = st.builds(
    lambda at, fraction, utc: at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + utc,
    st.datetimes(datetime(2026, 3, 2), datetime(2026, 3, 2, 0, 0, 3)),
    st.sampled_from(["", ".5", ".50", ".25", ".05", ".000001", ".999999", ".1"]),
    st.sampled_from(["Z", "+00:00"]),
)


@given(st.lists(st.tuples(_IDENTIFIER, _TIME, st.integers(0, 999)), min_size=1, max_size=40))
def test_in_key_order_sorts_copy_lines_by_meter_bytes_then_instant(readings: list[tuple[str, str, int]]) -> None:
    """Any readings the contract admits (a few meters, times within a few seconds, with and
    without fractions, ``Z`` or ``+00:00``), split over messages: the same lines come out, meter ids
    byte by byte, each meter's by instant (keys of one instant in any order among themselves)."""
    rows: list[ReadingRow] = [(m, ts, f"{v}.0", None, None, [], "gw:1.5", 1) for m, ts, v in readings]
    chunks = [copy_text(rows[i : i + 3]) for i in range(0, len(rows), 3)]
    out = in_key_order(chunks)
    lines = out.decode().splitlines(keepends=True)
    assert sorted(lines) == sorted(b"".join(chunks).decode().splitlines(keepends=True))
    keys = [(line.split("\t")[0].encode(), datetime.fromisoformat(line.split("\t")[1])) for line in lines]
    assert keys == sorted(keys)
