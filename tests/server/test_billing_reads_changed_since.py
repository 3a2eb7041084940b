"""A billing system's copy of /billing/reads stays the database's: pull, then pull ``changed_since``
the first pull's ``next_changed_since``, which gives the reads written or revised since and the keys
of those removed.

Before, a paged pull that straddled a VEE round held a mix: page 1 had the gap's estimates from
before the meter's 06:00 read came in (101.980 at 05:00), page 2 the re-estimated ones (101.957 at
07:00), so the register went backwards between the pages, and nothing said page 1 was revised.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

from collector.store import SAY_WHO, ReadingStore
from collector.vee.rounds import vee_round
from server.app import create_app
from server.auth import create_api_key
from tests.server.test_billing_vee_issues import _setup

START = datetime(2026, 10, 25, tzinfo=UTC)
GAP_FROM = datetime(2026, 11, 2, tzinfo=UTC)
HOURS = int((GAP_FROM - START) / timedelta(hours=1))
R0 = Decimal("100.000") + Decimal("0.010") * HOURS
PULL = {"account": "A-M", "from": "2026-11-01T12:00:00Z", "to": "2026-11-02T13:00:00Z"}
Key = tuple[str, str]


def _store(url: str, reads: list[tuple[datetime, Decimal]], seq0: int = 1) -> None:
    store = ReadingStore(url)
    store.write([("M", t.isoformat(), str(v), None, None, [], "gw1", seq0 + i) for i, (t, v) in enumerate(reads)])
    store.close()


def _with_gap(url: str) -> str:
    """An hourly meter silent from 00:00 to 12:00 on 2 November, the gap estimated by a round; a
    billing key."""
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 10, 1, tzinfo=UTC), None)])
    reads = [(START + timedelta(hours=h), Decimal("100.000") + Decimal("0.010") * h) for h in range(HOURS + 1)]
    _store(url, [*reads, (GAP_FROM + timedelta(hours=12), R0 + Decimal("0.120"))])
    vee_round(url, GAP_FROM + timedelta(hours=12, minutes=30))
    return key


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """An hourly meter silent from 00:00 to 12:00 on 2 November, the gap estimated by a round."""
    url = migrated_database_url
    key = _with_gap(url)
    with TestClient(create_app(url)) as client:
        yield client, {"Authorization": f"Bearer {key}"}, url


def _pull(client: TestClient, headers: dict[str, str], **params: Any) -> tuple[list[dict], list[dict], str]:
    """Every page of a pull: its items, its removed keys and its next_changed_since."""
    page = client.get("/billing/reads", params={**PULL, **params}, headers=headers).json()
    items, removed, since = page["items"], page["removed"], page["next_changed_since"]
    while page["next"]:
        page = client.get(page["next"], headers=headers).json()
        assert page["next_changed_since"] == since  # the pull's, on every page
        items, removed = items + page["items"], removed + page["removed"]
    return items, removed, since


def _key(read: dict) -> Key:
    return read["ts"], read["meter_id"]


def _apply(copy: dict[Key, dict], items: list[dict], removed: list[dict]) -> None:
    copy.update((_key(i), i) for i in items)
    for r in removed:
        del copy[_key(r)]


def test_a_pull_straddling_a_round_is_brought_level_by_a_changed_since_pull(api):
    client, headers, url = api
    first = client.get("/billing/reads", params={**PULL, "limit": 18}, headers=headers).json()
    since = first["next_changed_since"]
    _store(url, [(GAP_FROM + timedelta(hours=6), R0 + Decimal("0.020"))], seq0=900)  # the meter's 06:00 read
    vee_round(url, GAP_FROM + timedelta(hours=12, minutes=45))  # re-estimates the gap around it
    second = client.get(first["next"], headers=headers).json()
    copy = {_key(i): i for i in first["items"] + second["items"]}
    now = {_key(i): i for i in _pull(client, headers)[0]}
    differing = {k for k in now if copy.get(k) != now[k]}
    assert {k[0][11:16] for k in differing} == {f"{h:02d}:00" for h in range(1, 6)}  # page 1's gap hours

    items, removed, _ = _pull(client, headers, changed_since=since, limit=4)
    assert differing <= {_key(i) for i in items}
    assert {_key(i)[0][11:16] for i in items} == {f"{h:02d}:00" for h in range(1, 12)}  # the round's, no others
    assert removed == []  # the old estimates were deleted, and each key is stored again
    _apply(copy, items, removed)
    assert copy == now


def test_a_read_removed_since_is_listed_by_its_key_and_a_transaction_open_during_a_pull_is_not_missed(api):
    client, headers, url = api
    items, _, since = _pull(client, headers)
    copy = {_key(i): i for i in items}
    gone = (GAP_FROM + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    with psycopg.connect(url) as writer:  # opened before the next pull reads, committed after it
        writer.execute(SAY_WHO, ("vee:re-estimate", "a measured read came into its gap"))
        writer.execute("DELETE FROM readings WHERE meter_id = 'M' AND ts = %s", (gone,))
        writer.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M', %s, %s)",
            (GAP_FROM + timedelta(hours=12, minutes=30), R0 + Decimal("0.125")),
        )
        middle = _pull(client, headers, changed_since=since)
        writer.commit()
    assert middle[:2] == ([], [])  # nothing committed yet
    items, removed, _ = _pull(client, headers, changed_since=middle[2], limit=5)
    assert [(i["ts"], i["quality"]) for i in items] == [("2026-11-02T12:30:00Z", "actual")]
    assert [(r["ts"], r["meter_id"], r["service_point_id"], r["removed_by"]) for r in removed] == [
        (gone, "M", "SP-M", "vee:re-estimate")
    ]
    _apply(copy, items, removed)
    assert copy == {_key(i): i for i in _pull(client, headers)[0]}


def test_a_changed_since_ahead_of_the_database_s_clock_is_refused_not_answered_with_nothing(api):
    """A billing system that dates its pulls by its own clock, or writes its local time as UTC (11:00
    in Sydney as ``11:00Z``, 11 hours ahead), asked with a changed_since later than any read can be
    written: it was answered 200 with nothing, and the read the meter's 12:30 ingest wrote meanwhile
    was in neither that pull nor the one after (its received_at is before the next changed_since it
    would give), never billed. Now it is a 400 saying to give the previous pull's
    next_changed_since, as JSON and as CSV; that one is answered as before."""
    client, headers, url = api
    _, _, since = _pull(client, headers)
    with psycopg.connect(url) as conn:
        clock = conn.execute("SELECT clock_timestamp()").fetchone()
    assert clock is not None
    ahead = (clock[0] + timedelta(hours=11)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    for params in ({"changed_since": ahead}, {"changed_since": ahead, "format": "csv"}):
        refused = client.get("/billing/reads", params={**PULL, **params}, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["title"] == "changed_since ahead of the database"
        assert f"changed_since {ahead} is later than the database's clock" in refused.json()["detail"]
        assert "give the previous pull's next_changed_since" in refused.json()["detail"]
    _store(url, [(GAP_FROM + timedelta(hours=12, minutes=30), R0 + Decimal("0.125"))], seq0=700)
    items, _, _ = _pull(client, headers, changed_since=since)
    assert [i["ts"] for i in items] == ["2026-11-02T12:30:00Z"]


def test_the_csv_says_the_next_changed_since_and_lists_a_removed_read_as_removed(api):
    client, headers, url = api
    since = client.get("/billing/reads", params={**PULL, "format": "csv"}, headers=headers).headers[
        "Aquami-Next-Changed-Since"
    ]
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM readings WHERE meter_id = 'M' AND ts = %s", (GAP_FROM + timedelta(hours=3),))
    text = client.get("/billing/reads", params={**PULL, "format": "csv", "changed_since": since}, headers=headers).text
    lines = text.strip().split("\r\n")
    assert lines[0].endswith(",vee_flags,received_at,quality_by_key_id") and len(lines) == 2
    assert lines[1].startswith("2026-11-02T03:00:00Z,SP-M,M,,removed,")


def test_the_csv_header_gives_next_changed_since_as_the_json_does_and_it_is_taken_as_written(api):
    """The header said ``2026-12-06T18:36:10.032048+00:00`` where the JSON says ``…Z``: put into the
    next pull's URL as written (a shell's ``changed_since=$SINCE``), its ``+`` read as a space and the
    pull was a 422. Now the header is the JSON's text, which a URL carries as it is."""
    client, headers, _ = api
    first = client.get("/billing/reads", params=PULL, headers=headers).json()["next_changed_since"]
    since = client.get("/billing/reads", params={**PULL, "format": "csv"}, headers=headers).headers[
        "Aquami-Next-Changed-Since"
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", since) and since >= first
    query = "&".join(f"{name}={value}" for name, value in {**PULL, "format": "csv", "changed_since": since}.items())
    again = client.get(f"/billing/reads?{query}", headers=headers)
    assert again.status_code == 200, again.text
    assert (
        again.text.strip()
        == "ts,service_point_id,meter_id,volume_m3,quality,quality_by,quality_reason,vee_flags,received_at,"
        "quality_by_key_id"
    )


@pytest.fixture
def on_its_own_role(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str], str, str]]:
    """The server on a database role of its own, as a deployment gives it: no superuser, not a member
    of pg_read_all_stats, with its tables' privileges; the migrations and the writers (the
    collector's ingest and VEE) on the test's role. The client, its headers, the writers' URL and
    the server role's name."""
    url = migrated_database_url
    key = _with_gap(url)
    role = f"aquami_server_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        try:
            for kind in ("TABLES", "SEQUENCES"):
                conn.execute(sql.SQL(f"GRANT ALL ON ALL {kind} IN SCHEMA public TO {{}}").format(sql.Identifier(role)))
            with TestClient(create_app(make_conninfo(url, user=role))) as client:
                yield client, {"Authorization": f"Bearer {key}"}, url, role
        finally:
            conn.execute("ALTER FUNCTION open_transactions_floor() OWNER TO CURRENT_USER")  # a test may hand it over
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_server_on_its_own_role_does_not_hand_out_a_floor_past_another_role_s_open_transaction(on_its_own_role):
    """Ingest's transaction, on the collector's role, begins before a pull and writes a read dated by
    its start (received_at), committed after the pull. The server's role sees no start for it in
    pg_stat_activity: before, the pull's next_changed_since was its own now(), after the read's
    received_at, and the next pull did not give the read (a read lost for billing). Now the floor is
    asked of open_transactions_floor() (collector migration 0072), which sees every role's sessions."""
    client, headers, url, role = on_its_own_role
    since = _pull(client, headers)[2]
    with psycopg.connect(url) as writer:
        writer.execute("SELECT 1")  # the transaction begins: its now() dates what it writes
        with psycopg.connect(make_conninfo(url, user=role)) as as_the_server:
            seen = as_the_server.execute(
                "SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (writer.info.backend_pid,)
            ).fetchone()
        assert seen == (None,)  # the server's role cannot see when it began
        writer.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M', %s, %s)",
            (GAP_FROM + timedelta(hours=12, minutes=30), R0 + Decimal("0.125")),
        )
        middle = _pull(client, headers, changed_since=since)
        csv_since = client.get("/billing/reads", params={**PULL, "format": "csv"}, headers=headers).headers[
            "Aquami-Next-Changed-Since"
        ]
        writer.commit()
    assert middle[:2] == ([], [])  # nothing committed yet
    for floor in (middle[2], csv_since):
        items, removed, _ = _pull(client, headers, changed_since=floor)
        assert ([(i["ts"], i["quality"]) for i in items], removed) == ([("2026-11-02T12:30:00Z", "actual")], [])


def test_a_floor_whose_asker_cannot_see_every_session_is_refused_naming_the_grant(on_its_own_role):
    """open_transactions_floor() owned by a role that cannot see the writers' sessions (migrations run
    by the server's own unprivileged role): a pull is refused with a one-line 500 that names the
    grant, rather than given a floor past a transaction it cannot see; the grant it names makes the
    pull work."""
    client, headers, url, role = on_its_own_role
    with psycopg.connect(url, autocommit=True) as admin:  # connected: a session of another role
        admin.execute(sql.SQL("ALTER FUNCTION open_transactions_floor() OWNER TO {}").format(sql.Identifier(role)))
        count = admin.execute("SELECT count(*) FROM readings").fetchone()
        for params in ({}, {"changed_since": "2026-11-01T00:00:00Z"}, {"format": "csv"}):
            answer = client.get("/billing/reads", params={**PULL, **params}, headers=headers)
            assert answer.status_code == 500, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            detail = answer.json()["detail"]
            assert "\n" not in detail and detail.endswith(f"GRANT pg_read_all_stats TO {role}"), detail
        assert admin.execute("SELECT count(*) FROM readings").fetchone() == count  # nothing written or lost
        admin.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(role)))
        answer = client.get("/billing/reads", params=PULL, headers=headers)
        assert answer.status_code == 200, answer.text


def test_a_pull_held_back_by_a_session_left_idle_in_a_transaction_warns_once_naming_it(on_its_own_role, caplog):
    """A psql left open in a transaction holds next_changed_since back at its start: right (what it
    may still commit is dated so), but every pull until it ends sends more again, and nothing said
    why. A pull whose floor is more than the server's setting behind the database's clock now logs
    one warning line naming the session (pid, application_name, state), once for it however many
    pulls follow, the server on its own role with no grant."""
    _, headers, url, role = on_its_own_role
    caplog.set_level(logging.WARNING, logger="server.billing.repository")
    lag = timedelta(seconds=1)
    app = create_app(make_conninfo(url, user=role), floor_lag_warning=lag)
    with TestClient(app) as client, psycopg.connect(url, application_name="psql-left-open") as idle:
        (began,) = idle.execute("SELECT now()").fetchone() or ()  # its transaction begins, and stays open
        pid = idle.info.backend_pid
        time.sleep(lag.total_seconds() + 0.5)
        floors = [_pull(client, headers)[2] for _ in range(3)]
        csv = client.get("/billing/reads", params={**PULL, "format": "csv"}, headers=headers)
        floors.append(csv.headers["Aquami-Next-Changed-Since"])
        idle.rollback()
    assert {datetime.fromisoformat(f.replace("Z", "+00:00")) for f in floors} == {began}  # held back, as it should be
    said = [r.getMessage() for r in caplog.records if r.name == "server.billing.repository"]
    assert len(said) == 1, said
    (line,) = said
    assert "\n" not in line and line.startswith("billing: "), line
    for part in (f"pid {pid}", "application_name 'psql-left-open'", "state idle in transaction"):
        assert part in line, line
