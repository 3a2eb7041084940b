"""The writers of the consumption tables (consumption_hourly, consumption_daily, dma_consumption_hourly)
take one turn, the transaction lock 'cons' (collector migration 0061), before they touch a row of
them, so none can hold such a row while it waits for the turn: on real connections to the real
database, with a third session holding the turn so that each comes to wait for it.

A VEE round's refresh, a person's correction (and a supplied reading), a job card's refresh (server
migration 0082) and another correction of a meter of the same DMA, queued for the turn in either order,
all finish, and what they leave is what a refresh of every day from scratch computes. They cannot
deadlock: each takes the turn before its first consumption row, and the one holding it waits for no
lock but consumption rows, which only the holder of the turn writes.

The time zone command (``aquami collector timezone``, ``set_utility_timezone``) deleted every stored
hour and day first and took the turn only after, in its refresh: a correction's (or the round's)
refresh that had taken the turn meanwhile came to a row the command had deleted and waited for it,
while the command waited for the turn. PostgreSQL rolled one back: the person's correction failed with
"deadlock detected" (or the round's refresh, or the command). It now takes the turn first (collector
migration 0077).

A correction waiting for the turn (a VEE round's refresh of the whole fleet holds it for seconds) held
its meter's turn meanwhile (collector.meter_turns), and the collector's writer, storing a message with
a read of any meter of that bucket, waited behind it for the rest of the refresh (up to 14.8 s
measured, benchmarks/ingest_beside_a_refresh.py). A correction now gives way to a refresh under way
holding neither turn, and its read is judged again once the refresh is done.

A job card (register-meters) waited for the turn at its first installation holding its meters' rows of
``meters``, and the collector's writer registering one of them (a new meter heard before the file
committed, or any meter of a collector just started) waited behind it for the rest of the refresh. It
now gives way the same way (server.meters.meters_file)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from collector.batch_parser import ReadingRow
from collector.store import ReadingStore
from collector.vee.editing import edit_reading, substitute_reading
from collector.vee.rounds import vee_round
from server.meters.meters_file import record_meters_file
from server.meters.repository import Installation, register_meters
from tests.lock_waits import lock_waits, waiting_for_advisory
from tests.server.test_correction_and_ingest_take_turns import _in_thread

#: The refreshes' turn: pg_advisory_xact_lock's key ('cons', collector migration 0061).
TURN = 1668247155
T0 = datetime(2026, 3, 10, tzinfo=UTC)
METERS = ("M1", "M2")  # customers of one DMA, D1
TABLES = ("consumption_hourly", "consumption_daily", "dma_consumption_hourly")


@pytest.fixture
def batches_run_again(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What VEE said of its batches PostgreSQL rolled back for a conflict (a deadlock) and ran again:
    the round hides such a deadlock by running the batch again (collector.vee.runner)."""
    caplog.set_level(logging.INFO, logger="collector.vee.runner")
    return lambda: [r.getMessage() for r in caplog.records if "conflicted" in r.getMessage()]


@pytest.fixture
def fleet(migrated_database_url: str) -> Iterator[str]:
    """M1 and M2 in D1, read hourly for two days at 10 L an hour, their consumption refreshed; each
    fitted at a service point until its re-fit (a job card, :func:`_job_card`) is recorded."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        register_meters(conn, [(meter, "D1", "customer") for meter in METERS])
        for meter in METERS:
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) "
                "SELECT %s, %s + h * interval '1 hour', 100 + 0.01 * h FROM generate_series(0, 48) h",
                (meter, T0),
            )
            conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES (%s, 'D1')", (f"SP-{meter}-1",))
            conn.execute(
                "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
                "VALUES (%s, %s, %s, %s)",
                (f"SP-{meter}-1", meter, T0 - timedelta(days=1), T0 + timedelta(hours=19)),
            )
        conn.execute("UPDATE meters SET has_readings = true")  # as the collector leaves a meter it has read
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=2)))
    yield migrated_database_url


def _correction(url: str, meter: str) -> Callable[[], Any]:
    """A person's correction of the meter's read at 10:00 the first day, 5 L up, committed."""

    def run() -> None:
        ts = T0 + timedelta(hours=10)
        with psycopg.connect(url) as conn:
            edit_reading(conn, meter, ts, Decimal("100.105"), by="Ann", reason="photo of the register")

    return run


def _supplied(url: str, meter: str) -> Callable[[], Any]:
    """A person's read supplied between the meter's reads of 14:00 and 15:00, committed."""

    def run() -> None:
        with psycopg.connect(url) as conn:
            ts = T0 + timedelta(hours=14, minutes=30)
            substitute_reading(conn, meter, ts, Decimal("100.145"), by="Ann", reason="site visit")

    return run


def _job_card(url: str, meter: str) -> Callable[[], Any]:
    """register-meters of a file re-fitting the meter at a second service point at 20:00 the first day
    (the command's transaction: the meter, its installation, then its point's district)."""

    def run() -> None:
        installation = Installation(meter, f"SP-{meter}-2", "D1", T0 + timedelta(hours=20))
        with psycopg.connect(url) as conn, conn.transaction():
            record_meters_file(
                conn, [(meter, "D1", "customer")], None, [installation], ("removed_at",), reinstate_withdrawn=False
            )

    return run


def _round(url: str) -> Callable[[], Any]:
    """The collector's hourly VEE round at 23:00 the second day: its batch, then its refresh."""
    return lambda: vee_round(url, T0 + timedelta(hours=47))


def _timezone(url: str) -> Callable[[], Any]:
    """``aquami collector timezone Europe/London``."""

    def run() -> None:
        with psycopg.connect(url) as conn:
            conn.execute("SELECT set_utility_timezone('Europe/London')")

    return run


WRITERS: dict[str, Callable[[str], Callable[[], Any]]] = {
    "a correction of M1": lambda url: _correction(url, "M1"),
    "a correction of M2": lambda url: _correction(url, "M2"),
    "a read of M2 supplied": lambda url: _supplied(url, "M2"),
    "a job card of M1": lambda url: _job_card(url, "M1"),
    "a job card of M3, a new meter": lambda url: _job_card(url, "M3"),
    "the round": _round,
    "the time zone changed": _timezone,
}


def _waiting_for_the_turn(url: str, sessions: int, for_the_turn: int = 1) -> list[int]:
    """Until ``sessions`` sessions of this database wait for a lock, ``for_the_turn`` of them for the turn (the others
    for a meter's turn or row held by one waiting for it: the round's batch waits for a job card's
    meter): the pids waiting for the turn."""
    with psycopg.connect(url, autocommit=True) as monitor:
        for _ in range(400):
            waiting = lock_waits(monitor)  # this database's: not another pytest worker's (tests/lock_waits.py)
            turn = waiting_for_advisory(monitor, TURN)
            if len(waiting) >= sessions and len(turn) >= for_the_turn:
                return turn
            time.sleep(0.025)
    raise AssertionError(f"{sessions} sessions never came to wait for the turn")


def _stored(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in TABLES}


def _as_recomputed(url: str) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]:
    """The consumption tables as stored, and as a refresh of every day from scratch makes them."""
    with psycopg.connect(url) as conn:
        stored = _stored(conn)
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0 - timedelta(days=1), T0 + timedelta(days=3)))
        recomputed = _stored(conn)
        conn.rollback()
    return stored, recomputed


def _queued_behind_a_held_turn(url: str, first: str, second: str) -> dict[str, dict[str, Any]]:
    """``first`` started and come to wait (for the turn, or a meter's turn behind it), then ``second``;
    then the third session holding the turn lets go. What each did."""
    with psycopg.connect(url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (TURN,))
        first_thread, first_done = _in_thread(WRITERS[first](url))
        _waiting_for_the_turn(url, 1)
        second_thread, second_done = _in_thread(WRITERS[second](url))
        _waiting_for_the_turn(url, 2)
        holder.rollback()
    first_thread.join(60)
    second_thread.join(60)
    assert not first_thread.is_alive() and not second_thread.is_alive()
    return {first: first_done, second: second_done}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a correction of M1", "the round"),
        ("the round", "a correction of M1"),
        ("a correction of M1", "a correction of M2"),
        ("a correction of M1", "a read of M2 supplied"),
        ("a job card of M1", "the round"),
        ("the round", "a job card of M1"),
        ("a job card of M1", "a correction of M1"),
        ("a correction of M2", "a job card of M1"),
    ],
)
def test_refreshes_queued_for_their_turn_all_finish_and_leave_what_a_refresh_from_scratch_does(
    fleet: str, first: str, second: str, batches_run_again: Callable[[], list[str]]
) -> None:
    """``first`` waits for the turn a third session holds (a correction or a job card holding its
    rows, the round after its batch), then ``second``; the holder lets go: both finish, neither
    rolled back for a deadlock (nor the round's batch, run again), and the stored consumption is what
    a refresh of every day makes."""
    done = _queued_behind_a_held_turn(fleet, first, second)
    assert {side: result.get("error") for side, result in done.items()} == {first: None, second: None}
    assert batches_run_again() == []
    stored, recomputed = _as_recomputed(fleet)
    assert stored == recomputed
    assert len(stored["consumption_hourly"]) >= 2 * 48 - 1  # every hour of both meters (M1's re-fit's may be left out)


@pytest.mark.parametrize("first", ["a correction of M1", "the round"])
def test_changing_the_time_zone_does_not_deadlock_with_a_refresh_waiting_for_its_turn(fleet: str, first: str) -> None:
    """A correction (or the round, after its batch) waits for the turn a third session holds; the time
    zone is changed meanwhile; the holder lets go. Before, the command had deleted every stored hour,
    the correction's refresh came to one of them with the turn and waited for the command, which waited
    for the turn: "deadlock detected", one rolled back. Now the command waits for its turn before it
    deletes anything: both finish, and every hour is recomputed in the new zone, the correction in it."""
    done = _queued_behind_a_held_turn(fleet, first, "the time zone changed")
    assert {side: result.get("error") for side, result in done.items()} == {first: None, "the time zone changed": None}
    with psycopg.connect(fleet) as conn:
        assert conn.execute("SELECT utility_timezone()").fetchone() == ("Europe/London",)
        days = conn.execute("SELECT day FROM consumption_daily WHERE meter_id = 'M1' ORDER BY day").fetchall()
        ten = T0 + timedelta(hours=10)
        edited = conn.execute("SELECT quality FROM readings WHERE meter_id = 'M1' AND ts = %s", (ten,))
        assert edited.fetchone() == ("edited" if first == "a correction of M1" else "actual",)
    assert [day.astimezone(UTC).hour for (day,) in days] == [0, 0]  # London's midnights (GMT in March)
    stored, recomputed = _as_recomputed(fleet)
    assert stored == recomputed


def _consumption_locks(monitor: psycopg.Connection, pid: int) -> list[str]:
    """The consumption tables (and their chunks) ``pid`` holds a lock on."""
    rows = monitor.execute(
        "SELECT DISTINCT l.relation::regclass::text FROM pg_locks l WHERE l.pid = %(pid)s AND l.granted "
        "AND l.locktype = 'relation' AND l.relation IN ("
        "  SELECT t::regclass FROM unnest(%(tables)s::text[]) t UNION ALL"
        "  SELECT i.inhrelid FROM pg_inherits i"
        "  WHERE i.inhparent IN (SELECT t::regclass FROM unnest(%(tables)s::text[]) t))",
        {"pid": pid, "tables": list(TABLES)},
    ).fetchall()
    return sorted(row[0] for row in rows)


@pytest.mark.parametrize("writer", ["a correction of M1", "a read of M2 supplied", "a job card of M1", "the round",
                                    "the time zone changed"])  # fmt: skip
def test_a_writer_of_consumption_waits_for_its_turn_before_it_touches_a_table(fleet: str, writer: str) -> None:
    """Each writer of the consumption tables, come to wait for the turn a third session holds, holds
    no lock on any of them (no row written, none read for writing): the order that keeps the writers
    from deadlocking. Before, the time zone command waited there having deleted them all."""
    with psycopg.connect(fleet) as holder, psycopg.connect(fleet, autocommit=True) as monitor:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (TURN,))
        thread, done = _in_thread(WRITERS[writer](fleet))
        (waiting,) = _waiting_for_the_turn(fleet, 1)
        held = _consumption_locks(monitor, waiting)
        holder.rollback()
    thread.join(60)
    assert not thread.is_alive() and done.get("error") is None
    assert held == []


def test_a_correction_waits_for_its_meter_s_turn_before_the_refreshes_turn(
    fleet: str, batches_run_again: Callable[[], list[str]]
) -> None:
    """A job card of M1 holds M1's row of ``meters`` (register-meters) and is held back (a third session
    adding its new service point) before its refresh; the round's VEE batch holds the turns of M1's and
    M2's reads and waits for M1's row (it records the meters' read interval); a person corrects M2
    meanwhile. The third session lets go: the job card refreshes and commits, the batch goes on, the
    correction after it. A correction asks for the refreshes' turn last, once its meter's turn and its
    read are its own: one that held the refreshes' turn while waiting for its meter's (held by the
    batch, which waits for the job card, which waits for the refreshes' turn) would close a cycle,
    and PostgreSQL would roll one of the three back (the batch, run again by the round, or the
    correction, or the job card)."""
    with psycopg.connect(fleet) as holder:
        holder.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP-M1-2', 'D1')")
        card, card_done = _in_thread(WRITERS["a job card of M1"](fleet))
        _waiting_for_the_turn(fleet, 1, for_the_turn=0)
        vee, vee_done = _in_thread(WRITERS["the round"](fleet))
        _waiting_for_the_turn(fleet, 2, for_the_turn=0)
        correction, correction_done = _in_thread(WRITERS["a correction of M2"](fleet))
        _waiting_for_the_turn(fleet, 3, for_the_turn=0)
        holder.rollback()
    for thread in (card, vee, correction):
        thread.join(60)
        assert not thread.is_alive()
    errors = {side: done.get("error") for side, done in (("job card", card_done), ("round", vee_done),
                                                          ("correction", correction_done))}  # fmt: skip
    assert errors == {"job card": None, "round": None, "correction": None}
    assert vee_done["result"]["batches_left"] == 0
    assert batches_run_again() == []
    stored, recomputed = _as_recomputed(fleet)
    assert stored == recomputed


def _ingested_or_waiting(url: str, thread: Any) -> bool:
    """Whether ``thread`` (the collector's writer) ends before a session of this database comes to
    wait for a lock other than the refreshes' turn (the writer waits): False as soon as one does."""
    with psycopg.connect(url, autocommit=True) as monitor:
        for _ in range(400):
            if not thread.is_alive():
                return True
            other = monitor.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE NOT l.granted AND a.datname = current_database() "
                "AND NOT (l.locktype = 'advisory' AND l.classid = 0 AND l.objid = %s)",
                (TURN,),
            ).fetchone()
            if other != (0,):
                return False
            time.sleep(0.025)
    raise AssertionError("the writer neither finished nor came to wait")


def _stored_beside_a_refresh(fleet: str, person: Callable[[], Any], arriving: list[ReadingRow]) -> tuple[bool, int]:
    """A round's refresh holds the turn (its transaction open, its rows written); ``person`` (a
    correction, a job card) comes to wait for it in a thread; the collector's writer stores
    ``arriving`` meanwhile; then the refresh commits, both end without an error, the next round runs,
    and the consumption tables are what a refresh of every day from scratch makes. Whether the writer
    stored its reads while the refresh still held the turn, and how many it inserted."""
    store = ReadingStore(fleet)
    try:
        with psycopg.connect(fleet) as refresh:
            refresh.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=2)))
            waiting, waited = _in_thread(person)
            _waiting_for_the_turn(fleet, 1)
            ingest, ingested = _in_thread(lambda: store.write(arriving))
            stored_meanwhile = _ingested_or_waiting(fleet, ingest)
            refresh.commit()
        ingest.join(60)
        waiting.join(60)
    finally:
        store.close()
    assert not ingest.is_alive() and not waiting.is_alive()
    assert ingested.get("error") is None and waited.get("error") is None
    vee_round(fleet, T0 + timedelta(hours=50))
    stored, recomputed = _as_recomputed(fleet)
    assert stored == recomputed
    return stored_meanwhile, int(ingested["result"].inserted)


@pytest.mark.parametrize("writer", ["a correction of M1", "a read of M2 supplied"])
def test_arriving_reads_are_stored_while_a_correction_waits_for_a_round_s_refresh(fleet: str, writer: str) -> None:
    """A round's refresh holds the turn (its transaction open, its rows written); a person's correction
    of M1 (or a read of M2 supplied) comes to wait for it; the collector's writer stores the next reads
    of M1 and M2 meanwhile. Before, the correction waited holding its meter's turn, and the writer
    waited for the correction, so for the refresh. Now the reads are committed while the refresh still
    holds the turn; then it commits, the correction lands after it, and the next round counts the new
    reads once: what a refresh of every day from scratch makes."""
    arriving: list[ReadingRow] = [
        (meter, (T0 + timedelta(hours=49)).isoformat(), "100.490", None, None, [], "GW-1", 1) for meter in METERS
    ]
    stored_meanwhile, inserted = _stored_beside_a_refresh(fleet, WRITERS[writer](fleet), arriving)
    assert stored_meanwhile, "the collector's writer waited for the correction waiting for the refresh"
    assert inserted == 2
    with psycopg.connect(fleet) as conn:
        qualities = conn.execute(
            "SELECT meter_id, ts, quality FROM readings WHERE quality <> 'actual' OR ts = %s ORDER BY 1, 2",
            (T0 + timedelta(hours=49),),
        ).fetchall()
        newest_hour = conn.execute(
            "SELECT meter_id, intervals FROM consumption_hourly WHERE hour = %s ORDER BY 1", (T0 + timedelta(hours=48),)
        ).fetchall()
    person = ("M1", T0 + timedelta(hours=10), "edited") if writer == "a correction of M1" else (
        "M2", T0 + timedelta(hours=14, minutes=30), "substituted")  # fmt: skip
    assert qualities == sorted([person, *((meter, T0 + timedelta(hours=49), "actual") for meter in METERS)])
    assert newest_hour == [("M1", 1), ("M2", 1)]  # the arriving read's interval, counted once


@pytest.mark.parametrize("card", ["a job card of M1", "a job card of M3, a new meter"])
def test_arriving_reads_are_stored_while_a_job_card_waits_for_a_round_s_refresh(fleet: str, card: str) -> None:
    """A round's refresh holds the turn; register-meters of a file re-fitting M1 (or fitting M3, a new
    meter) comes to wait for it; a collector just started (every meter new to it: it registers them,
    ``INSERT … ON CONFLICT DO NOTHING``) stores the next reads of M1, M2 and M3 meanwhile. Before, the
    job card waited holding its meter's row of ``meters``, and the writer's insert of that meter waited
    for it, so for the refresh. Now the reads are committed while the refresh still holds the turn; then
    it commits, the job card lands after it (its meter registered and fitted as the file says), and the
    next round counts the new reads once: what a refresh of every day from scratch makes."""
    meter = "M1" if card == "a job card of M1" else "M3"
    arriving: list[ReadingRow] = [
        (m, (T0 + timedelta(hours=49)).isoformat(), "100.490", None, None, [], "GW-1", 1) for m in (*METERS, "M3")
    ]
    stored_meanwhile, inserted = _stored_beside_a_refresh(fleet, WRITERS[card](fleet), arriving)
    assert stored_meanwhile, "the collector's writer waited for the job card waiting for the refresh"
    assert inserted == 3
    with psycopg.connect(fleet) as conn:
        registered = conn.execute(
            "SELECT meter_id, registered, dma, has_readings FROM meters ORDER BY meter_id"
        ).fetchall()
        fitted = conn.execute(
            "SELECT service_point_id, installed_at FROM meter_installations WHERE meter_id = %s ORDER BY 2", (meter,)
        ).fetchall()
        newest_hour = conn.execute(
            "SELECT meter_id, intervals FROM consumption_hourly WHERE hour = %s ORDER BY 1", (T0 + timedelta(hours=48),)
        ).fetchall()
    # M3 heard first is registered by the writer (no district), then by the file (D1)
    assert registered == [
        ("M1", True, "D1", True),
        ("M2", True, "D1", True),
        ("M3", meter == "M3", "D1" if meter == "M3" else None, True),
    ]
    assert fitted[-1] == (f"SP-{meter}-2", T0 + timedelta(hours=20))
    assert newest_hour == [("M1", 1), ("M2", 1)]  # the arriving read's interval, counted once (M3 has one read)
