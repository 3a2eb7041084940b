"""Two register-meters at once whose files put two meters at one service point at once: the second
is told the overlap in words, on real sessions of the real database.

Before, a job card took the consumption refreshes' lock ('cons', server migration 0082's trigger)
only once its statement had written its rows. A file whose card of a meter with reads took the lock
(a removal recorded), then inserted an installation clashing with one the other file had inserted
but not committed, waited on the other at the exclusion constraint of migration 0010; the other's
card waited on the lock: a deadlock. PostgreSQL rolled one back with "deadlock detected", not the
overlap a person can correct. Now every statement on meter_installations takes the lock before it
writes a row (server migration 0083): the second file waits for the first to commit, then is refused
its clashing row by name."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from server.meters.repository import Installation, record_installations
from server.meters.withdrawals import withdraw_installation
from server.withdrawal import Withdrawal
from tests.collector.test_consumption_refreshes_take_turns import TURN
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread, _until


def _day(day: int) -> datetime:
    return datetime(2026, 10, day, tzinfo=UTC)


def _record(url: str, installations: list[Installation]) -> None:
    """register-meters' installations of a file on a connection of its own, committed, as another process."""
    with psycopg.connect(url) as conn, conn.transaction():
        record_installations(conn, installations)


def _fleet(url: str) -> None:
    """Meters M1 and M2 read since 30 September, M2 fitted at SP-2 on 1 October; M3, M4 and H not read yet; the
    service points known."""
    with psycopg.connect(url, autocommit=True) as conn:
        for meter in ("M1", "M2", "M3", "M4", "H"):
            conn.execute("INSERT INTO meters (meter_id, role, dma) VALUES (%s, 'customer', 'D1')", (meter,))
        for point in ("SP-1", "SP-2", "SP-4"):
            conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES (%s, 'D1')", (point,))
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP-2', 'M2', %s)",
            (_day(1),),
        )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for meter in ("M1", "M2"):
                copy.write_row((meter, datetime(2026, 9, 30, tzinfo=UTC), "0.500"))
                for day, volume in ((1, "1.000"), (2, "1.500"), (3, "2.000"), (6, "3.000")):
                    copy.write_row((meter, _day(day), volume))


def test_a_clashing_installation_filed_at_once_is_refused_in_words_not_by_deadlock(
    migrated_database_url: str,
) -> None:
    """File B records M2's removal on 4 October (its card takes the refreshes' lock), then M4 at SP-4
    and M3 at SP-1 from 5 October; file A fits M1 at SP-1 from 5 October too. A third session holds
    SP-4 (an installation of H not committed), so that B waits there with the lock while A writes;
    then it lets go.

    Before: A inserted M1 and its card waited on B's lock, B came to M3 and waited on A's row: a
    deadlock, A rolled back with "deadlock detected". Now A waits for the lock before it writes, B
    records its file, and A is told that M1 and M3 would both be at SP-1."""
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'btree_gist'").fetchone() is None:
            pytest.fail("btree_gist is missing: the installations' exclusion constraints are not there")
    _fleet(url)
    file_b = [
        Installation("M2", "SP-2", "D1", _day(1), removed_at=_day(4), row=2),
        Installation("M4", "SP-4", "D1", _day(5), row=3),
        Installation("M3", "SP-1", "D1", _day(5), row=4),
    ]
    file_a = [Installation("M1", "SP-1", "D1", _day(5), row=2)]
    with psycopg.connect(url) as holder:
        holder.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP-4', 'H', %s)",
            (_day(5),),
        )
        b, b_done = _in_thread(lambda: _record(url, file_b))
        _waiting_on_rows(url, 1)  # B at SP-4, its removal's card done
        a, a_done = _in_thread(lambda: _record(url, file_a))
        assert _until(url, "advisory", a), a_done  # A waits for the refreshes' lock B holds
        holder.rollback()
    b.join(60)
    a.join(60)
    assert not a.is_alive() and not b.is_alive()
    assert "error" not in b_done, b_done["error"]
    error = a_done.get("error")
    assert isinstance(error, ValueError), f"A was to be refused its row in words, not {error!r}"
    assert str(error) == (
        "row 2: a meter is in one place at a time, and a place has one meter at a time: "
        "meter M1 at SP-1 from 2026-10-05T00:00:00+00:00 overlaps meter M3 at SP-1 from 2026-10-05T00:00:00+00:00, "
        "recorded before"
    )
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT meter_id, service_point_id, installed_at, removed_at FROM meter_installations ORDER BY meter_id"
        ).fetchall()
    assert stored == [
        ("M2", "SP-2", _day(1), _day(4)),
        ("M3", "SP-1", _day(5), None),
        ("M4", "SP-4", _day(5), None),
    ]


def _withdraw(url: str, meter_id: str, installed_at: datetime) -> None:
    """withdraw-installation on a connection of its own, committed, as another process."""
    with psycopg.connect(url) as conn, conn.transaction():
        withdraw_installation(conn, meter_id, installed_at, Withdrawal("Bea", "keyed against the wrong meter"))


def test_a_withdrawal_waits_for_the_turn_before_it_takes_an_installation_out(migrated_database_url: str) -> None:
    """withdraw-installation of M2's installation (M2 read), a third session holding the refreshes'
    turn: while it waits for the turn, M2's row is free for another writer (a register-meters file
    recording it again), so neither holds what the other waits for. Before, it deleted the row and
    then waited for the turn in 0082's trigger, holding the row: a file holding the turn and
    recording M2 again waited on it, a deadlock."""
    url = migrated_database_url
    _fleet(url)
    with psycopg.connect(url) as holder, psycopg.connect(url) as other:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (TURN,))
        withdrawal, withdrawal_done = _in_thread(lambda: _withdraw(url, "M2", _day(1)))
        assert _until(url, "advisory", withdrawal), withdrawal_done
        try:
            row = other.execute(
                "SELECT meter_id FROM meter_installations WHERE meter_id = 'M2' FOR UPDATE NOWAIT"
            ).fetchall()
        except psycopg.errors.LockNotAvailable:
            row = None
        other.rollback()
        holder.rollback()
    withdrawal.join(60)
    assert not withdrawal.is_alive() and "error" not in withdrawal_done, withdrawal_done.get("error")
    assert row == [("M2",)], "the withdrawal held M2's installation while it waited for the turn"
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM meter_installations WHERE meter_id = 'M2'").fetchone()
        withdrawn = conn.execute("SELECT count(*) FROM withdrawn_installations WHERE meter_id = 'M2'").fetchone()
    assert (left, withdrawn) == ((0,), (1,))
