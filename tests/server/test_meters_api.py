"""The read API: authentication, roles, problem+json errors, paging and periods, against a real DB."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import register_meters

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PASTED = {"Sec-Fetch-Site": "none"}  # the sign-in link pasted into the address bar signs in at once


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {
            "reader": create_api_key(conn, "test reader", ["reader"]),
            "billing": create_api_key(conn, "test billing", ["billing"]),
        }
        conn.execute("INSERT INTO meters (meter_id, registered, dma) VALUES ('M1', true, 'DMA1'), ('M2', false, NULL)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h, alarms) VALUES (%s, %s, %s, %s, %s)",
                [
                    ("M1", T0 + timedelta(hours=h), Decimal("100.001") + h, 0.25, ["leak"] if h == 47 else [])
                    for h in range(48)
                ],
            )
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_no_key_is_401_and_a_wrong_key_too(api):
    client, _ = api
    body = assert_problem(client.get("/meters"), 401)
    assert "API key" in body["detail"]
    assert_problem(client.get("/meters", headers=auth("aqk_0000.nope")), 401)
    assert_problem(client.get("/meters", headers={"X-API-Key": "garbage"}), 401)


def test_a_key_without_the_role_is_403(api):
    client, keys = api
    body = assert_problem(client.get("/meters", headers=auth(keys["billing"])), 403)
    assert "billing" in body["detail"]


@pytest.mark.parametrize("name", ["", "   ", "a\x00b"])
def test_a_key_needs_a_name_that_says_someone(migrated_database_url, name):
    """The key's name is who a correction, a dismissal or a payment is recorded as: a blank one was
    stored, and the editing code refuses an edit whose "by" is blank."""
    from typer.testing import CliRunner

    from aquami.cli import app

    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="needs a name"):
            create_api_key(conn, name, ["meterization"])
        row = conn.execute("SELECT count(*) FROM api_keys").fetchone()
    assert row == (0,)
    if "\x00" not in name:  # a NUL cannot travel in a command line
        args = ["server", "create-key", "--name", name, "--role", "reader", "--database-url", migrated_database_url]
        result = CliRunner().invoke(app, args, terminal_width=200)
        assert result.exit_code == 2 and "needs a name" in result.output


def test_a_tampered_secret_is_refused(api):
    client, keys = api
    key = keys["reader"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert_problem(client.get("/meters", headers=auth(tampered)), 401)


def test_a_revoked_key_is_refused_by_the_api_and_the_web_page(api, migrated_database_url):
    """Revoking is how a lost or leaked key stops working: a page signed in with it before is
    signed out too (its cookie holds the key)."""
    client, keys = api
    key = keys["reader"]
    signed_in = client.get("/login", params={"key": key}, headers=PASTED, follow_redirects=True)
    assert signed_in.status_code == 200 and "M1" in signed_in.text
    assert client.get("/meters", headers=auth(key)).status_code == 200
    key_id = key.removeprefix("aqk_").partition(".")[0]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        assert conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id,)).rowcount == 1
    assert_problem(client.get("/meters", headers=auth(key)), 401)
    assert_problem(client.get("/meters", headers={"X-API-Key": key}), 401)
    page = client.get("/")  # the cookie from signing in
    assert page.status_code == 401 and "Sign in" in page.text and "M1" not in page.text
    again = client.post("/login", data={"key": key})
    assert again.status_code == 401 and "not valid" in again.text


def test_meters_list_their_latest_reading(api):
    client, keys = api
    response = client.get("/meters", headers=auth(keys["reader"]))
    assert response.status_code == 200
    items = {m["meter_id"]: m for m in response.json()["items"]}
    assert set(items) == {"M1", "M2"}
    latest = items["M1"]["latest"]
    assert datetime.fromisoformat(latest["ts"]) == T0 + timedelta(hours=47)
    assert Decimal(latest["volume_m3"]) == Decimal("147.001")
    assert latest["alarms"] == ["leak"]
    assert items["M2"]["latest"] is None and items["M2"]["registered"] is False


def test_a_meter_registered_as_bulk_says_so_and_registering_it_again_as_single_undoes_it(api, migrated_database_url):
    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        register_meters(conn, [("M1", "DMA1", "customer"), ("FLATS-1", "DMA1", "customer")], bulk={"FLATS-1"})
    bulk = {m["meter_id"]: m["bulk"] for m in client.get("/meters", headers=auth(keys["reader"])).json()["items"]}
    assert bulk == {"M1": False, "M2": False, "FLATS-1": True}
    page = client.get("/login", params={"key": keys["reader"]}, headers=PASTED, follow_redirects=True).text
    row = next(line for line in page.splitlines() if ">FLATS-1</a>" in line)
    assert ">bulk</span>" in row
    assert ">bulk</span>" not in next(line for line in page.splitlines() if ">M1</a>" in line)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        register_meters(conn, [("FLATS-1", "DMA1", "customer")])
        with pytest.raises(psycopg.errors.CheckViolation):
            register_meters(conn, [("DMA1-IN", "DMA1", "inlet")], bulk={"DMA1-IN"})
    assert client.get("/meters/FLATS-1", headers=auth(keys["reader"])).json()["bulk"] is False
    assert client.get("/meters/DMA1-IN", headers=auth(keys["reader"])).status_code == 404


def test_meters_page_through_with_next(api):
    client, keys = api
    first = client.get("/meters", params={"limit": 1}, headers=auth(keys["reader"])).json()
    assert [m["meter_id"] for m in first["items"]] == ["M1"]
    second = client.get(first["next"], headers=auth(keys["reader"])).json()
    assert [m["meter_id"] for m in second["items"]] == ["M2"]
    assert second["next"] is None


def test_readings_in_a_period_paged_without_loss_or_repeat(api):
    client, keys = api
    params = {"from": (T0 + timedelta(hours=10)).isoformat(), "to": (T0 + timedelta(hours=30)).isoformat(), "limit": 7}
    url: str | None = "/meters/M1/readings"
    seen: list[str] = []
    while url:
        page = client.get(url, params=params if url == "/meters/M1/readings" else None, headers=auth(keys["reader"]))
        assert page.status_code == 200, page.text
        seen.extend(r["ts"] for r in page.json()["items"])
        url = page.json()["next"]
    expected = [T0 + timedelta(hours=h) for h in range(10, 30)]
    assert [datetime.fromisoformat(ts) for ts in seen] == expected


def test_unknown_meter_is_404_problem(api):
    client, keys = api
    body = assert_problem(client.get("/meters/NOPE/readings", headers=auth(keys["reader"])), 404)
    assert "NOPE" in body["detail"]
    assert_problem(client.get("/meters/NOPE", headers=auth(keys["reader"])), 404)


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-11-01T00:00:00"},  # no offset: ambiguous, refused
        {"from": "yesterday"},
        {"limit": 0},
        {"limit": 10**6},
    ],
)
def test_bad_query_parameters_are_422_problems(api, params):
    client, keys = api
    body = assert_problem(client.get("/meters/M1/readings", params=params, headers=auth(keys["reader"])), 422)
    assert body["errors"]


@pytest.mark.parametrize(
    ("path", "params"),
    [("/meters/M%001", {}), ("/meters/M1%00/readings", {}), ("/meters", {"cursor": "M\x001"})],
)
def test_text_holding_a_nul_character_is_a_400_problem(api, path, params):
    """PostgreSQL text cannot hold U+0000: such a value can name nothing stored."""
    client, keys = api
    body = assert_problem(client.get(path, params=params, headers=auth(keys["reader"])), 400)
    assert "NUL" in body["detail"]


def test_a_key_holding_a_nul_character_is_refused_as_any_wrong_key(api):
    client, _ = api
    # A quoted cookie value may spell characters in octal: \000 is NUL.
    assert_problem(client.get("/meters", headers={"Cookie": 'aquami_key="aqk_\\000ab.cd"'}), 401)
    page = client.post("/login", data={"key": "aqk_\x00ab.cd"})
    assert page.status_code == 401 and "not valid" in page.text


def test_an_empty_period_is_400(api):
    client, keys = api
    params = {"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
    assert_problem(client.get("/meters/M1/readings", params=params, headers=auth(keys["reader"])), 400)


def test_bad_requests_leave_stored_data_intact(api, migrated_database_url):
    client, keys = api
    client.get("/meters/M1/readings", params={"from": "nonsense"}, headers=auth(keys["reader"]))
    client.post("/meters", json={"meter_id": "X"}, headers=auth(keys["reader"]))
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (48,)
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (2,)


def test_the_web_page_asks_for_a_key_then_lists_meters(api):
    client, keys = api
    page = client.get("/")
    assert page.status_code == 401 and "Sign in" in page.text
    signed_in = client.post("/login", data={"key": keys["reader"]}, follow_redirects=True)
    assert signed_in.status_code == 200
    assert "M1" in signed_in.text and "147.001" in signed_in.text and "leak" in signed_in.text


def test_the_web_page_refuses_a_key_without_a_page_role(api):
    client, keys = api
    page = client.get("/login", params={"key": keys["billing"]}, headers=PASTED, follow_redirects=True)
    assert page.status_code == 403 and "may not see meters" in page.text  # as the API answers it
    assert "M1" not in page.text


@pytest.mark.parametrize("meter_id", ["A/B", "DMA1/block 7/flat 2"])
def test_every_meter_route_reaches_a_meter_whose_id_holds_a_slash(api, migrated_database_url, meter_id):
    """A database from before register-meters checked may hold such ids: the page links to
    /meters/A%2FB/readings, Starlette decodes it to /meters/A/B/readings before routing, and every
    meter route was a 404. Meter "A" (the id's first part) is there too and must stay untouched."""
    client, keys = api
    other = meter_id.split("/")[0]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        for mid, volume in ((meter_id, "1.500"), (other, "7.000")):
            conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (mid,))
            conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)", (mid, T0, volume))
    base, ts = "/meters/" + quote(meter_id, safe=""), T0.isoformat()
    reader, editor = auth(keys["reader"]), auth(keys["billing"])

    meter = client.get(base, headers=reader)
    assert meter.status_code == 200 and meter.json()["meter_id"] == meter_id, meter.text
    readings = client.get(f"{base}/readings", headers=reader)
    assert readings.status_code == 200 and readings.json()["meter_id"] == meter_id, readings.text
    assert [Decimal(r["volume_m3"]) for r in readings.json()["items"]] == [Decimal("1.5")]
    later = (T0 + timedelta(hours=1)).isoformat()
    supplied = client.post(f"{base}/readings", json={"ts": later, "volume_m3": "1.6", "reason": "site visit"},
                           headers=editor)  # fmt: skip
    assert supplied.status_code == 201, supplied.text
    corrected = client.put(f"{base}/readings/{ts}", json={"volume_m3": "1.55", "reason": "misread"}, headers=editor)
    assert corrected.status_code == 200 and Decimal(corrected.json()["volume_m3"]) == Decimal("1.55"), corrected.text
    history = client.get(f"{base}/readings/{ts}/history", headers=reader)
    assert history.status_code == 200 and [Decimal(v["volume_m3"]) for v in history.json()] == [Decimal("1.5")], (
        history.text
    )
    with psycopg.connect(migrated_database_url) as conn:
        stored = conn.execute(
            "SELECT meter_id, ts, volume_m3 FROM readings WHERE meter_id IN (%s, %s) ORDER BY meter_id, ts",
            (meter_id, other),
        ).fetchall()
    assert sorted(stored) == sorted(
        [
            (other, T0, Decimal("7.000")),
            (meter_id, T0, Decimal("1.550")),
            (meter_id, T0 + timedelta(hours=1), Decimal("1.600")),
        ]
    )


def test_a_trailing_slash_still_leads_to_the_list_and_the_meter(api):
    """A meter id may hold "/" but neither ends nor begins with one: /meters/ is not meter ""."""
    client, keys = api
    for path, target in (("/meters/", "/meters"), ("/meters/M1/", "/meters/M1")):
        answer = client.get(path, headers=auth(keys["reader"]), follow_redirects=False)
        assert answer.status_code == 307 and answer.headers["location"].endswith(target), (path, answer.headers)


def test_openapi_describes_the_read_api(api):
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/meters", "/meters/{meter_id}", "/meters/{meter_id}/readings"} <= set(paths)


def test_meters_are_registered_from_a_meters_file_and_a_bad_file_changes_nothing(api, migrated_database_url, tmp_path):
    from typer.testing import CliRunner

    from aquami.cli import app

    client, keys = api
    good = tmp_path / "meters.csv"
    good.write_text("meter_id,dma,role,bulk\nM1,DMA2,customer,\nFLATS-9,DMA2,customer,true\nDMA2-IN,DMA2,inlet,false\n")
    result = CliRunner().invoke(app, ["server", "register-meters", str(good), "--database-url", migrated_database_url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"registered": 3, "bulk": 1, "installations": 0}
    items = {m["meter_id"]: m for m in client.get("/meters", headers=auth(keys["reader"])).json()["items"]}
    assert {k: (m["dma"], m["role"], m["bulk"], m["registered"]) for k, m in items.items() if k != "M2"} == {
        "M1": ("DMA2", "customer", False, True),
        "FLATS-9": ("DMA2", "customer", True, True),
        "DMA2-IN": ("DMA2", "inlet", False, True),
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("meter_id,dma,role,bulk\nM1,DMA3,customer,\nFLATS-9,DMA3,customer,maybe\n")
    wide = CliRunner(env={"COLUMNS": "400"})  # the error box wraps at the terminal's width
    result = wide.invoke(app, ["server", "register-meters", str(bad), "--database-url", migrated_database_url])
    assert result.exit_code == 2
    assert "row 3: bulk must be true, false or empty, not 'maybe'" in result.output
    after = client.get("/meters/M1", headers=auth(keys["reader"])).json()
    assert after["dma"] == "DMA2"


def _register(database_url: str, path, content: str):
    from typer.testing import CliRunner

    from aquami.cli import app

    path.write_text(content)
    wide = CliRunner(env={"COLUMNS": "400"})  # the error box wraps at the terminal's width
    return wide.invoke(app, ["server", "register-meters", str(path), "--database-url", database_url])


def _installations(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT meter_id, service_point_id, installed_at, removed_at FROM meter_installations "
            "ORDER BY meter_id, installed_at"
        ).fetchall()


EXCHANGE = datetime(2026, 10, 14, 10, 30, tzinfo=UTC)
FITTED = datetime(2019, 5, 2, 8, 0, tzinfo=UTC)


def test_a_meter_exchange_is_recorded_from_a_meters_file_and_recorded_again_takes_the_file_s_dates(
    migrated_database_url, tmp_path
):
    header = "meter_id,dma,role,service_point_id,installed_at,removed_at\n"
    result = _register(
        migrated_database_url,
        tmp_path / "m.csv",
        header + "OLD-7,DMA5,customer,SP-7,2019-05-02T08:00:00Z,\nDMA5-IN,DMA5,inlet,,,\n",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"registered": 2, "bulk": 0, "installations": 1}
    assert _installations(migrated_database_url) == [("OLD-7", "SP-7", FITTED, None)]
    # the job card of the exchange: the old meter's removal and the new one's fitting, in one file
    result = _register(
        migrated_database_url,
        tmp_path / "m.csv",
        header + "NEW-7,DMA5,customer,SP-7,2026-10-14T10:30:00Z,\n"
        "OLD-7,DMA5,customer,SP-7,2019-05-02T08:00:00Z,2026-10-14T10:30:00Z\n",
    )
    assert result.exit_code == 0, result.output
    assert _installations(migrated_database_url) == [
        ("NEW-7", "SP-7", EXCHANGE, None),
        ("OLD-7", "SP-7", FITTED, EXCHANGE),
    ]
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT dma FROM service_points WHERE service_point_id = 'SP-7'").fetchone() == ("DMA5",)


def test_the_job_cards_registers_of_an_exchange_are_recorded_exactly(migrated_database_url, tmp_path):
    """Billing reads across an exchange from the registers on its job card: the new meter's at its
    fitting, the old one's at its removal, as decimals (a float would invent litres)."""
    header = "meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3\n"
    result = _register(
        migrated_database_url,
        tmp_path / "m.csv",
        header + "OLD-7,DMA5,customer,SP-7,2019-05-02T08:00:00Z,2026-10-14T10:30:00Z,12.5,1234.567\n"
        "NEW-7,DMA5,customer,SP-7,2026-10-14T10:30:00Z,,0.001,\n",
    )
    assert result.exit_code == 0, result.output
    with psycopg.connect(migrated_database_url) as conn:
        rows = conn.execute(
            "SELECT meter_id, initial_register_m3, final_register_m3 FROM meter_installations ORDER BY meter_id"
        ).fetchall()
    assert rows == [("NEW-7", Decimal("0.001"), None), ("OLD-7", Decimal("12.5"), Decimal("1234.567"))]


@pytest.mark.parametrize("constraints", ["kept", "dropped"])
def test_a_meters_file_that_puts_two_meters_in_one_place_at_once_records_nothing(
    migrated_database_url, tmp_path, constraints
):
    """Refused by the database's exclusion constraints where btree_gist exists, and by the
    repository's own check where it does not (a bare embedded PostgreSQL)."""
    if constraints == "dropped":
        with psycopg.connect(migrated_database_url, autocommit=True) as conn:
            conn.execute(
                "ALTER TABLE meter_installations DROP CONSTRAINT IF EXISTS meter_installations_one_meter_per_point"
            )
            conn.execute(
                "ALTER TABLE meter_installations DROP CONSTRAINT IF EXISTS meter_installations_one_point_per_meter"
            )
    header = "meter_id,dma,role,service_point_id,installed_at,removed_at\n"
    first = header + "OLD-8,DMA5,customer,SP-8,2019-05-02T08:00:00Z,\n"
    assert _register(migrated_database_url, tmp_path / "m.csv", first).exit_code == 0
    result = _register(  # the new meter fitted while the old one is still recorded in place
        migrated_database_url, tmp_path / "m.csv", header + "NEW-8,DMA6,customer,SP-8,2026-10-14T10:30:00Z,\n"
    )
    assert result.exit_code == 2
    assert "a meter is in one place at a time, and a place has one meter at a time" in result.output
    assert _installations(migrated_database_url) == [("OLD-8", "SP-8", FITTED, None)]
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT 1 FROM meters WHERE meter_id = 'NEW-8'").fetchone() is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("A,DMA5,customer,,2019-05-02T08:00:00Z,,,", "row 2: an installation needs its service_point_id"),
        ("A,DMA5,customer,SP-1,,,,", "row 2: service_point_id needs installed_at"),
        ("A,DMA5,customer,SP-1,,2019-05-02T08:00:00Z,,", "row 2: service_point_id needs installed_at"),
        ("A,DMA5,customer,SP-1,2019-05-02 08:00,,,", "row 2: installed_at:"),
        ("A,DMA5,customer,,,,5,", "row 2: an installation needs its service_point_id"),
        ("A,DMA5,customer,SP-1,2019-05-02T08:00:00Z,,,7.5", "row 2: final_register_m3 is read at the removal"),
        ("A,DMA5,customer,SP-1,2019-05-02T08:00:00Z,,-1,", "row 2: initial_register_m3 '-1' is no register"),
        ("A,DMA5,customer,SP-1,2019-05-02T08:00:00Z,,NaN,", "row 2: initial_register_m3 'NaN' is not a decimal number"),
        ("A,DMA5,customer,SP-1,2019-05-02T08:00:00Z,,12 m3,", "row 2: initial_register_m3 '12 m3' is not a decimal"),
    ],
)
def test_an_installation_without_its_place_or_date_is_refused(migrated_database_url, tmp_path, row, message):
    header = "meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3\n"
    result = _register(migrated_database_url, tmp_path / "m.csv", header + row + "\n")
    assert result.exit_code == 2 and message in result.output
    assert _installations(migrated_database_url) == []


def test_after_the_database_cut_every_connection_the_next_requests_are_answered(api, migrated_database_url):
    """A database restart cuts the connections the pool holds: the pool checks a connection before
    lending it, so no request fails on one that is already dead."""
    client, keys = api
    assert client.get("/meters", headers=auth(keys["reader"])).status_code == 200
    name = psycopg.conninfo.conninfo_to_dict(migrated_database_url)["dbname"]
    with psycopg.connect(migrated_database_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    assert cut is not None and cut[0] >= 1
    for _ in range(3):
        response = client.get("/meters", headers=auth(keys["reader"]))
        assert response.status_code == 200, response.text


def test_a_server_started_before_its_database_answers_503_then_serves_once_it_is_there(
    timescale_admin_url, monkeypatch
):
    """Start-up no longer fails for a database that is not there yet (a host's boot order): the
    server starts, answers 503 problems with Retry-After meanwhile (its liveness still 200), and
    serves once the database is there. It used to exit after 30 s of waiting."""
    from collector.migrate import migrate
    from server import db
    from tests.services import drop_database, with_database

    monkeypatch.setattr(db, "STARTUP_WAIT_S", 0.5)
    monkeypatch.setattr(db, "CONNECTION_WAIT_S", 1.0)
    name = f"aquami_test_{uuid.uuid4().hex[:12]}"
    url = with_database(timescale_admin_url, name)
    try:
        with TestClient(create_app(url)) as client:
            away = client.get("/meters", headers=auth("aqk_0000.nope"))
            assert_problem(away, 503)
            assert away.headers["retry-after"] == "5"
            assert client.get("/health").status_code == 200
            with psycopg.connect(timescale_admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            migrate(url)
            with psycopg.connect(url, autocommit=True) as conn:
                key = create_api_key(conn, "late reader", ["reader"])
            deadline = time.monotonic() + 30
            while (response := client.get("/meters", headers=auth(key))).status_code == 503:
                assert time.monotonic() < deadline, "the server never reached its database"
                time.sleep(0.2)
            assert response.status_code == 200, response.text
    finally:
        drop_database(timescale_admin_url, url)


def test_a_connection_lost_during_a_request_is_a_503_problem(api, migrated_database_url, monkeypatch):
    """The database cut the connection while the request ran (a failover mid-query): 503 with
    Retry-After, not a 500 "unexpected error". (The pool's check before lending is off here, so the
    cut connection is lent, as one cut just after the check would be.)"""
    from psycopg_pool import ConnectionPool

    _, keys = api
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(lambda conn: None))
    name = psycopg.conninfo.conninfo_to_dict(migrated_database_url)["dbname"]
    with TestClient(create_app(migrated_database_url)) as client:
        assert client.get("/meters", headers=auth(keys["reader"])).status_code == 200
        with psycopg.connect(migrated_database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        response = client.get("/meters", headers=auth(keys["reader"]))
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "5"
        # each cut connection the pool still holds is lent once more (no check here), then discarded
        later = [client.get("/meters", headers=auth(keys["reader"])).status_code for _ in range(5)]
        assert set(later) <= {200, 503} and later[-1] == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # a job card's registers written with decimal commas: a field too many
        ("meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3\n"
         "OLD-1,D1,customer,SP-1,2019-05-02T08:00:00Z,2026-10-14T10:30:00Z,12,5,1234,567\n",
         "row 2: every row needs exactly 8 fields"),
        # a file cut off after installed_at: a field too few
        ("meter_id,dma,role,service_point_id,installed_at,removed_at\nOLD-2,D1,customer,SP-2,2019-05-02T08:00:00Z\n",
         "row 2: every row needs exactly 6 fields"),
        ("meter_id,dma,role,service_point_id,installed_at,removed\nOLD-1,D1,customer,SP-1,2019-05-02T08:00:00Z,\n",
         "unknown columns ['removed']"),
        ("meter_id,dma,role\n,D1,customer\n", "row 2: meter_id is empty"),
        ("meter_id,dma,role\nM\x001,D1,customer\n", "row 2: a NUL character"),
        # a name no gateway can send (the reads contract's identifier): no reading would ever be its
        ("meter_id,dma,role\nM1,D1,customer\nLOT#7,D1,customer\n", "row 3: meter_id 'LOT#7' is no name"),
        ("meter_id,dma,role\nWM 2,D1,customer\n", "row 2: meter_id 'WM 2' is no name"),
        ("meter_id,dma,role\n" + "M" * 65 + ",D1,customer\n", "row 2: meter_id 'MMMM"),
        ("meter_id,dma,role,service_point_id,installed_at\nM1,D1,customer,SP-1,0001-01-01T00:00:00+01:00\n",
         "installed_at: '0001-01-01T00:00:00+01:00' is outside the years 1900 to 9998 in UTC"),
        # year 1 in UTC was stored, and no session west of UTC could read the installations back
        ("meter_id,dma,role,service_point_id,installed_at\nM1,D1,customer,SP-1,0001-01-01T00:00:00Z\n",
         "row 2: installed_at: '0001-01-01T00:00:00Z' is outside the years 1900 to 9998 in UTC"),
        # a quoted time over two lines: a broken file, whose line break was dropped
        ('meter_id,dma,role,service_point_id,installed_at\nM1,D1,customer,SP-1,"2019-05-02T08:00:00Z\n"\n',
         "row 2: installed_at: '2019-05-02T08:00:00Z\\n' has a line break"),
        ("meter_id,dma,role,service_point_id,installed_at,initial_register_m3\n"
         "M1,D1,customer,SP-1,2019-05-02T08:00:00Z,0.0000000001\n", "more than 9 decimal places"),
        # (1E-20000, which once overflowed PostgreSQL's numeric, is an exponent: scientific notation)
        ("meter_id,dma,role,service_point_id,installed_at,initial_register_m3\n"
         "M1,D1,customer,SP-1,2019-05-02T08:00:00Z,1E-20000\n", "'1E-20000' is in scientific notation"),
    ],
)  # fmt: skip
def test_a_meters_file_that_would_shift_lose_or_break_values_is_refused_by_row(
    migrated_database_url, tmp_path, content, message
):
    result = _register(migrated_database_url, tmp_path / "m.csv", content)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert _installations(migrated_database_url) == []


def test_a_meters_file_not_in_utf_8_is_refused_with_what_to_do(migrated_database_url, tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("meter_id,dma,role\nZÄHLER-1,D1,customer\n".encode("cp1252"))
    from typer.testing import CliRunner

    from aquami.cli import app

    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        app, ["server", "register-meters", str(path), "--database-url", migrated_database_url]
    )
    assert result.exit_code == 2 and "not UTF-8" in result.output and "save the file as UTF-8" in result.output


def test_recording_a_file_again_without_the_optional_columns_keeps_what_they_recorded(migrated_database_url, tmp_path):
    """A file without removals, job-card registers or the bulk column says nothing about them:
    recorded again, it un-removed the meter, wiped its registers and made a block of flats a house."""
    full = (
        "meter_id,dma,role,bulk,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3\n"
        "M-1,D1,customer,true,SP-1,2019-05-02T08:00:00Z,2026-10-14T10:30:00Z,12.5,1234.567\n"
    )
    assert _register(migrated_database_url, tmp_path / "a.csv", full).exit_code == 0
    partial = "meter_id,dma,role,service_point_id,installed_at\nM-1,,customer,SP-1,2019-05-02T08:00:00Z\n"
    result = _register(migrated_database_url, tmp_path / "b.csv", partial)
    assert result.exit_code == 0, result.output
    with psycopg.connect(migrated_database_url) as conn:
        installation = conn.execute(
            "SELECT removed_at, initial_register_m3, final_register_m3 FROM meter_installations"
        ).fetchone()
        meter = conn.execute("SELECT dma, bulk FROM meters WHERE meter_id = 'M-1'").fetchone()
    assert installation == (EXCHANGE, Decimal("12.5"), Decimal("1234.567"))
    assert meter == (None, True)  # an empty DMA is none (not one called ''); bulk as recorded


def test_meters_not_read_since_an_instant_are_the_ones_not_communicating(api, migrated_database_url):
    """A utility's daily no-read report: meters with no reading at or after an instant (none at all,
    or their latest earlier), paged like the list, each with when its gateway reported it offline.
    Before, there was no asking it but reading every meter's latest reading in turn."""
    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M3', true), ('M4', true)")
        conn.execute(  # M3 read until T0 + 10 h, M4 until T0 + 50 h
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M3', %s, 5), ('M4', %s, 7)",
            (T0 + timedelta(hours=10), T0 + timedelta(hours=50)),
        )
        conn.execute(
            "INSERT INTO events (meter_id, ts, event, state, gateway_id) VALUES"
            " ('M3', %(off)s, 'meter_offline', 'raised', 'gw-1'),"
            " ('M4', %(off)s, 'meter_offline', 'raised', 'gw-1'), ('M4', %(on)s, 'meter_online', 'raised', 'gw-1')",
            {"off": T0 + timedelta(hours=11), "on": T0 + timedelta(hours=50)},
        )

    def silent(since: datetime, limit: int = 100) -> list[dict]:
        found, url = [], f"/meters?limit={limit}&not_read_since={since.isoformat().replace('+00:00', 'Z')}"
        while url:
            page = client.get(url, headers=auth(keys["reader"]))
            assert page.status_code == 200, page.text
            found += page.json()["items"]
            url = page.json()["next"]
        return found

    # M1 read until T0 + 47 h, M2 never
    assert [m["meter_id"] for m in silent(T0 + timedelta(hours=47))] == ["M2", "M3"]
    assert [m["meter_id"] for m in silent(T0 + timedelta(hours=47), limit=1)] == ["M2", "M3"]  # paged
    assert [m["meter_id"] for m in silent(T0 + timedelta(hours=11))] == ["M2", "M3"]
    assert [m["meter_id"] for m in silent(T0 + timedelta(hours=10))] == ["M2"]  # read at the instant itself
    assert [m["meter_id"] for m in silent(T0 + timedelta(hours=60))] == ["M1", "M2", "M3", "M4"]
    everyone = {m["meter_id"]: m for m in client.get("/meters", headers=auth(keys["reader"])).json()["items"]}
    assert datetime.fromisoformat(everyone["M3"]["offline_since"]) == T0 + timedelta(hours=11)
    assert everyone["M4"]["offline_since"] is None  # back online since
    assert everyone["M1"]["offline_since"] is None and everyone["M2"]["offline_since"] is None
    one = client.get("/meters/M3", headers=auth(keys["reader"])).json()
    assert datetime.fromisoformat(one["offline_since"]) == T0 + timedelta(hours=11)
    assert_problem(client.get("/meters?not_read_since=2026-11-01T00:00", headers=auth(keys["reader"])), 422)


def test_the_earliest_and_latest_fitting_times_are_read_back_in_any_session_zone(migrated_database_url, tmp_path):
    """The bounds of a stored time (aquami.stored_times: the years 1900 to 9998 in UTC) are recorded
    and read back by a client of its own whatever its session's TimeZone (year 1 was recorded, and
    no session west of UTC could load it: psycopg's DataError)."""
    content = (
        "meter_id,dma,role,service_point_id,installed_at,removed_at\n"
        "M1,D1,customer,SP-1,1900-01-01T00:00:00Z,9998-12-31T23:59:59.999999Z\n"
    )
    result = _register(migrated_database_url, tmp_path / "m.csv", content)
    assert result.exit_code == 0, result.output
    earliest, latest = datetime(1900, 1, 1, tzinfo=UTC), datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    for zone in ("America/Los_Angeles", "Etc/GMT+12", "Etc/GMT-14", "<EAST>-167", "<WEST>+167"):
        with psycopg.connect(migrated_database_url) as conn:
            conn.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(zone)))
            rows = conn.execute("SELECT installed_at, removed_at FROM meter_installations").fetchall()
        assert rows == [(earliest, latest)], zone


@pytest.mark.parametrize("constraints", ["kept", "dropped"])
def test_a_meters_file_s_overlap_names_its_rows(migrated_database_url, tmp_path, constraints):
    """The refusal named the file only (the database's constraints name no row; the repository's own
    check, where they do not exist, the meters): in a file of thousands of meters, the row was to be
    found by hand. It names the file's row(s) now, and says which side was recorded before."""
    if constraints == "dropped":
        with psycopg.connect(migrated_database_url, autocommit=True) as conn:
            for constraint in ("meter_installations_one_meter_per_point", "meter_installations_one_point_per_meter"):
                conn.execute(f"ALTER TABLE meter_installations DROP CONSTRAINT IF EXISTS {constraint}")
    header = "meter_id,dma,role,service_point_id,installed_at,removed_at\n"
    first = header + "OLD-8,DMA5,customer,SP-8,2019-05-02T08:00:00Z,\n"
    assert _register(migrated_database_url, tmp_path / "m.csv", first).exit_code == 0
    rule = "a meter is in one place at a time, and a place has one meter at a time"
    files = {
        "recorded.csv": (
            "A-1,DMA5,customer,SP-1,2026-01-01T00:00:00Z,\nNEW-8,DMA6,customer,SP-8,2026-10-14T10:30:00Z,\n",
            f"row 3: {rule}: meter NEW-8 at SP-8 from 2026-10-14T10:30:00+00:00 overlaps "
            "meter OLD-8 at SP-8 from 2019-05-02T08:00:00+00:00, recorded before",
        ),
        "among.csv": (
            "X-2,DMA5,customer,SP-9,2026-02-01T00:00:00Z,\nA-1,DMA5,customer,SP-1,2026-01-01T00:00:00Z,\n"
            "X-1,DMA5,customer,SP-9,2026-01-01T00:00:00Z,2026-03-01T00:00:00Z\n",
            f"rows 2 and 4: {rule}: meter X-2 at SP-9 from 2026-02-01T00:00:00+00:00 overlaps "
            "meter X-1 at SP-9 from 2026-01-01T00:00:00+00:00",
        ),
    }
    for name, (rows, said) in files.items():
        path = tmp_path / name
        result = _register(migrated_database_url, path, header + rows)
        assert result.exit_code == 2, result.output
        assert f"Invalid value for METERS: {path}: {said}" in " ".join(result.output.replace("│", " ").split())
        assert _installations(migrated_database_url) == [("OLD-8", "SP-8", FITTED, None)]
