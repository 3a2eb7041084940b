"""A page read in several queries shows the database as of one moment (server.snapshot): a write
committed between two of its queries shows in none of its parts or, on the next view, in all. Before,
each query saw the database as it was when that query began, and a reading delivered while the meter
page was read could be missing from its readings and already counted in its chart."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.pq import TransactionStatus

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.alerts.dismissal import dismiss_as
from server.app import create_app
from server.auth import SESSION_COOKIE, SESSION_PREFIX, create_api_key, verify_api_key
from server.care import repository as care_repository
from server.meters import repository
from server.meters.repository import register_meters
from server.snapshot import one_moment

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOURS = 48  # hourly reads from T0 to T0 + 48 h: two whole days of intervals, 1 and 2 March


@pytest.fixture
def fleet(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, str]]:
    """Meter M1 read hourly over 1 and 2 March, its consumption stored, an open burst with its enquiry;
    a customer care key; the app,
    and a connection of the test's own (not the app's pool) to write with meanwhile."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "care", ["customer_care"])
        register_meters(conn, [("M1", "D1", "customer")])
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M1'")  # as the collector's ingest does
        for hour in range(HOURS + 1):
            _read(conn, hour)
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=4)))
        at = T0 + timedelta(hours=HOURS)
        burst = new_alert(
            AlertKind.BURST, "M1", "D1", start=at - timedelta(hours=2), detected_at=at, last_seen=at,
            ended_at=None, rate_l_h=186.0, volume_l=372.0, confidence=0.8, evidence=((at - timedelta(hours=1), at),),
        ).replace(updated_at=at)  # fmt: skip
        save_changes(conn, AlertChanges(opened=[burst]))  # its enquiry raised with it
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, key


def _read(conn: psycopg.Connection, hour: int) -> None:
    """M1's read ``hour`` hours after T0: 10 L more each hour."""
    conn.execute(
        "INSERT INTO readings (meter_id, ts, volume_m3, quality) VALUES ('M1', %s, %s, 'actual')",
        (T0 + timedelta(hours=hour), Decimal("100") + Decimal(hour) * Decimal("0.010")),
    )


def _then_deliver_a_read(conn: psycopg.Connection, seen: list[psycopg.Connection]) -> Callable[..., Any]:
    """readings_newest_first, after which the collector (the test's connection) commits M1's next
    read, on 3 March, and refreshes its consumption: a day the page's chart, read next, may count."""
    original = repository.readings_newest_first

    def reading_then_delivered(page_conn: psycopg.Connection, *args: Any, **kwargs: Any) -> Any:
        seen.append(page_conn)
        rows = original(page_conn, *args, **kwargs)
        _read(conn, HOURS + 1)
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=4)))
        return rows

    return reading_then_delivered


def _newest_reading(page: str) -> datetime:
    readings = page.split("<h2>Readings")[1]
    first = re.search(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)</td>", readings)
    assert first is not None, readings[:500]
    return datetime.fromisoformat(first.group(1)).replace(tzinfo=UTC)


def _chart_s_newest_day(page: str) -> date:
    heading = re.search(r"<h2>Daily consumption <small class=\"muted\">\d+ days to (\d{4}-\d\d-\d\d)", page)
    assert heading is not None
    return date.fromisoformat(heading.group(1))


def test_a_read_delivered_while_the_meter_page_is_read_shows_in_every_part_or_none(
    fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, conn, key = fleet
    seen: list[psycopg.Connection] = []
    monkeypatch.setattr(repository, "readings_newest_first", _then_deliver_a_read(conn, seen))
    answer = client.get("/care/meters/M1", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    newest = _newest_reading(answer.text)
    # an interval is its closing read's day (less 1 µs): the newest listed read's day is the chart's newest
    assert (newest - timedelta(microseconds=1)).date() == _chart_s_newest_day(answer.text)
    assert newest == T0 + timedelta(hours=HOURS)  # the page's moment: before the delivery
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", answer.text.split("</dl>")[0], re.S))
    assert facts["Latest reading"].split(" at ")[1].startswith(f"{newest:%Y-%m-%d %H:%M:%S} UTC")

    monkeypatch.undo()  # the next view: the delivered read, in every part
    again = client.get("/care/meters/M1", headers={"Authorization": f"Bearer {key}"}).text
    assert _newest_reading(again) == T0 + timedelta(hours=HOURS + 1)
    assert _chart_s_newest_day(again) == date(2026, 3, 3)

    (page_conn,) = seen  # handed back to the pool as it was lent: autocommit, read-write, no transaction
    assert page_conn.autocommit and page_conn.read_only is None and page_conn.isolation_level is None
    assert page_conn.info.transaction_status == TransactionStatus.IDLE


def _then_dismiss(conn: psycopg.Connection, key: str, read: Callable[..., Any]) -> Callable[..., Any]:
    """``read``, after which a colleague (the test's connection) dismisses M1's burst: noted on its enquiry."""
    colleague = verify_api_key(conn, key)
    assert colleague is not None

    def read_then_dismissed(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)
        (alert_id,) = [row[0] for row in conn.execute("SELECT alert_id FROM alerts").fetchall()]
        dismiss_as(conn, colleague, alert_id, "the customer ran a hose")
        return found

    return read_then_dismissed


def test_an_alert_dismissed_while_the_meters_page_is_read_is_not_listed_as_active_dismissed(
    fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The meters page ranks the active alerts, then reads them: before, one dismissed between the two
    was listed under "Active alerts, open or ongoing: 1" as dismissed."""
    client, conn, key = fleet
    ranked = care_repository.most_urgent_active_alert_ids
    monkeypatch.setattr(care_repository, "most_urgent_active_alert_ids", _then_dismiss(conn, key, ranked))
    page = client.get("/", headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200, page.text
    active = page.text.split("<h2>Active alerts, open or ongoing: 1")[1].split("</section>")[0]
    assert "M1</a>" in active and "· open" in active and "dismissed" not in active
    assert re.search(r"enquiry #\d+</a>, open, ", active)

    monkeypatch.undo()  # the next view: no alert active
    assert "Active alerts" not in client.get("/", headers={"Authorization": f"Bearer {key}"}).text


def test_an_alert_dismissed_while_its_enquiry_s_page_is_read_shows_with_its_note_or_not_at_all(
    fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enquiry's page reads the enquiry and its updates, then its alert: before, an alert dismissed
    between the two showed dismissed, and the updates lacked the note its dismissal wrote."""
    client, conn, key = fleet
    (enquiry_id,) = [row[0] for row in conn.execute("SELECT enquiry_id FROM enquiries").fetchall()]
    monkeypatch.setattr(care_repository, "get_enquiry", _then_dismiss(conn, key, care_repository.get_enquiry))
    path = f"/care/enquiries/{enquiry_id}"
    page = client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200, page.text
    updates = page.text.split('<ol class="updates">')[1].split("</ol>")[0]
    assert '<span class="status">open</span>' in page.text.split("<dt>Alert</dt>")[1].split("</dd>")[0]
    assert "hose" not in updates

    monkeypatch.undo()  # the next view: the alert dismissed, and its note
    again = client.get(path, headers={"Authorization": f"Bearer {key}"}).text
    assert '<span class="status">dismissed</span>' in again.split("<dt>Alert</dt>")[1].split("</dd>")[0]
    assert "hose" in again.split('<ol class="updates">')[1].split("</ol>")[0]


def test_a_connection_lent_after_a_page_writes(fleet) -> None:
    """After the pages' one moment, the pool's connections still write: a sign-in (a session stored)."""
    client, _, key = fleet
    assert client.get("/care/meters/M1", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    pool = client.app.state.pool
    with pool.connection() as lent:
        assert lent.execute("SHOW transaction_read_only").fetchone() == {"transaction_read_only": "off"}
        assert lent.execute("SHOW transaction_isolation").fetchone() == {"transaction_isolation": "read committed"}
    signed = client.post("/login", data={"key": key}, follow_redirects=False)
    assert signed.status_code == 303 and signed.cookies.get(SESSION_COOKIE, "").startswith(SESSION_PREFIX)


def test_one_moment_refuses_a_connection_in_a_transaction_and_a_block_within_one_reads_in_its_moment(
    migrated_database_url: str,
) -> None:
    """Within a transaction the isolation level is no longer the block's to choose: said, not ignored.
    A block within a block (a page around get_enquiry) reads in the outer one's moment."""
    refused = "autocommit connection outside a transaction"
    with psycopg.connect(migrated_database_url) as plain, pytest.raises(ValueError, match=refused), one_moment(plain):
        pass  # not autocommit
    with (
        psycopg.connect(migrated_database_url, autocommit=True) as conn,
        psycopg.connect(migrated_database_url, autocommit=True) as other,
    ):
        with conn.transaction(), pytest.raises(ValueError, match=refused), one_moment(conn):  # a writer's
            pass
        with one_moment(conn):
            before = conn.execute("SELECT count(*) FROM readings").fetchone()
            other.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M9', now(), 1)")
            with one_moment(conn):
                assert conn.execute("SELECT count(*) FROM readings").fetchone() == before == (0,)
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (1,)


def _statements_received(conn: psycopg.Connection) -> list[str]:
    """The statements the server receives from ``conn`` from now on, as its own log says them
    (``log_statement``, its lines sent to this connection), appended as they come."""
    said: list[str] = []
    conn.add_notice_handler(lambda notice: said.append((notice.message_primary or "").removeprefix("statement: ")))
    conn.execute("SET log_statement = 'all'")
    conn.execute("SET client_min_messages = log")
    said.clear()  # (the second SET's own line)
    return said


def test_one_moment_opens_its_transaction_in_one_statement(migrated_database_url: str) -> None:
    """A block's moment costs the page two statements, its first query's round trip opening it:
    before, psycopg's BEGIN, then SET TRANSACTION to choose the isolation level and read-only."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        said = _statements_received(conn)
        with one_moment(conn):
            conn.execute("SELECT 1")
        assert said == ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "SELECT 1", "COMMIT"]
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("read committed",)


def test_a_block_that_fails_leaves_the_connection_as_it_was_lent(migrated_database_url: str) -> None:
    """A write in the block is refused (read only) and the block's transaction rolled back: the
    connection is autocommit, outside a transaction, read-write again, and the next block has its own moment."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), one_moment(conn):
            conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M9', now(), 1)")
        assert conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE
        conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M9', now(), 1)")
        with one_moment(conn):
            assert conn.execute("SELECT count(*) FROM readings").fetchone() == (1,)
        with pytest.raises(ZeroDivisionError), one_moment(conn):
            conn.execute("SELECT 1")
            raise ZeroDivisionError  # not the database's: the transaction still open is rolled back
        assert conn.info.transaction_status == TransactionStatus.IDLE
