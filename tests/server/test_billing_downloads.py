"""Billing files' names: ASCII, from the parsed period and a safe form of the account id.

Built from the request's text, a period Python 3.11 parses with any character between date and
time ("2026-11-01€00:00Z") was a 500 for its CSV and NEM12 (a header is Latin-1 at most), and one
with a CR there left the connection closed with no answer; an account id "ACC-Ő1" was a 500 too.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from server.app import create_app
from server.auth import create_api_key
from server.billing.downloads import attachment
from server.billing.service import parse_period, period_label, to_csv
from server.problems import Problem

T0 = datetime(2026, 11, 1, tzinfo=UTC)
#: What h11 sends in a header value (no controls), and Latin-1 at most: here, printable ASCII.
HEADER_VALUE = re.compile(r"[\x20-\x7e]+")


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "Bea", ["billing"])
        conn.execute("INSERT INTO meters (meter_id, registered, dma) VALUES ('M1', true, 'D1')")
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP1', 'D1')")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A1', 'Ada'), ('ACC-Ő1', 'Őze')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('ACC-Ő1', 'SP1', %s)",
            (T0 - timedelta(days=30),),
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP1', 'M1', %s)",
            (T0 - timedelta(days=30),),
        )
        for hour in range(25):
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M1', %s, %s)",
                (T0 + timedelta(hours=hour), Decimal("100.000") + Decimal("0.010") * hour),
            )
    with TestClient(create_app(migrated_database_url), raise_server_exceptions=False) as client:
        yield client, {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "path",
    [
        "/billing/determinants?format=csv&period=2026-11-01%E2%82%AC00:00Z/2026-12-01%E2%82%AC00:00Z",
        "/billing/nem12?period=2026-11-01%E2%82%AC00:00Z/2026-12-01%E2%82%AC00:00Z",
        "/billing/determinants?format=csv&period=2026-11-01%0D00:00Z/2026-12-01T00:00Z",
        "/billing/determinants?period=2026-11-01%E2%82%AC00:00Z/2026-12-01%E2%82%AC00:00Z",
        "/billing/nem12?period=2026-11%0A",
    ],
)
def test_a_period_with_no_t_between_date_and_time_is_an_invalid_period(api, path):
    client, headers = api
    response = client.get(path, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Invalid period"


@pytest.mark.parametrize(
    ("path", "filename"),
    [
        ("/billing/determinants?format=csv&period=2026-11", "determinants-2026-11.csv"),
        ("/billing/determinants?format=csv&period=2026-11-01T00:00Z/2026-11-01T12:00Z",
         "determinants-20261101T000000Z-20261101T120000Z.csv"),
        ("/billing/determinants?format=csv&period=2026-11-01 00:00Z/2026-11-15", "determinants-20261101-20261115.csv"),
        ("/billing/nem12?period=2026-11", "nem12-2026-11.csv"),
        ("/billing/reads?format=csv&account=A1&from=2026-11-01T00:00Z&to=2026-11-02T00:00Z",
         "reads-A1-20261101-20261102.csv"),
    ],
)  # fmt: skip
def test_a_file_is_named_from_its_parsed_period(api, path, filename):
    client, headers = api
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'


def test_an_account_id_outside_ascii_names_its_reads_file_in_filename_star(api):
    client, headers = api
    path = "/billing/reads?format=csv&account=ACC-%C5%901&from=2026-11-01T00:00Z&to=2026-11-02T00:00Z"
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert response.text.count("\r\n") == 1 + 24  # the header and the day's reads
    disposition = response.headers["content-disposition"]
    assert disposition == (
        'attachment; filename="reads-ACC-_1-20261101-20261102.csv"; '
        "filename*=UTF-8''reads-ACC-%C5%901-20261101-20261102.csv"
    )


@given(st.text())
def test_any_file_name_makes_a_header_h11_sends_and_keeps_the_name_exactly(name: str) -> None:
    header = attachment(name + ".csv")
    assert HEADER_VALUE.fullmatch(header)
    plain = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', header)
    exact = re.fullmatch(r"attachment; filename=\"[A-Za-z0-9._-]+\"; filename\*=UTF-8''([A-Za-z0-9%._~-]+)", header)
    assert plain or exact
    assert (plain[1] if plain else unquote(exact[1], errors="strict")) == name + ".csv"  # type: ignore[index]


@given(
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.timedeltas(timedelta(seconds=1), timedelta(days=400)),
)
def test_a_period_label_is_ascii_whatever_the_period(start: datetime, length: timedelta) -> None:
    end = min(start + length, datetime(9999, 12, 31, tzinfo=UTC))
    for zone in (UTC, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Pacific/Pago_Pago")):
        assert re.fullmatch(r"[0-9TZ-]+", period_label(start, end, zone))


def test_period_labels_say_months_days_or_instants() -> None:
    london = ZoneInfo("Europe/London")
    assert period_label(*parse_period("2026-07", london), london) == "2026-07"
    assert period_label(*parse_period("2026-12-01/2027-01-01", london), london) == "2026-12"
    assert period_label(*parse_period("2026-07-01/2026-07-15", london), london) == "20260701-20260715"
    assert period_label(*parse_period("2026-07-01T06:30+01:00/2026-07-02", london), london) == (
        "20260701T053000Z-20260701T230000Z"
    )
    assert period_label(datetime(1, 1, 1, tzinfo=UTC), datetime(1, 2, 1, tzinfo=UTC)) == "0001-01"


@pytest.mark.parametrize(
    "period",
    [
        "2026-11-01€00:00Z/2026-12-01T00:00Z",
        "2026-11-01T00:00Z/2026-12-01\r00:00Z",
        "2026-11-01x00:00Z/2026-12-01T00:00Z",
        "٢٠٢٦-١١",  # Arabic-Indic digits: Python's \d and int() take them
        "2026-11\n",
    ],
)
def test_period_text_python_would_take_but_iso_8601_would_not_is_refused(period: str) -> None:
    with pytest.raises(Problem) as raised:
        parse_period(period)
    assert raised.value.status == 400 and raised.value.title == "Invalid period"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("2026-11-01T12.5Z", "'2026-11-01T12.5Z' has a fraction on no seconds"),  # ISO 8601's 12:30
        ("2026-11-01T12:00.5Z", "'2026-11-01T12:00.5Z' has a fraction on no seconds"),  # 12:00:30
        ("2026-11-01T12:00:00.Z", "'2026-11-01T12:00:00.Z' has a fraction on no seconds, or one with no digit"),
    ],
)
def test_a_period_bound_with_a_fraction_on_no_seconds_is_refused_as_a_stored_time(text: str, said: str) -> None:
    """Python read each as 12:00 and a fraction of a second: a period half an hour off, said nowhere."""
    with pytest.raises(Problem) as raised:
        parse_period(f"{text}/2026-12-01T00:00Z")
    assert raised.value.status == 400 and raised.value.title == "Invalid period"
    assert raised.value.detail.startswith(said)


def test_a_period_bound_s_digits_past_the_microsecond_are_cut_towards_the_past() -> None:
    start, _ = parse_period("2026-11-01T00:00:00.123456789Z/2026-12-01T00:00Z")
    assert start == T0 + timedelta(microseconds=123456)


@pytest.mark.parametrize("text", ["2026-11-01T00:00Z", "2026-11-01t00:00Z", "2026-11-01 00:00Z", "20261101T000000Z"])
def test_a_date_time_with_t_or_a_space_between_date_and_time_is_taken(text: str) -> None:
    assert parse_period(f"{text}/2026-12-01T00:00Z")[0] == T0


@given(st.text())
def test_no_text_cell_of_a_billing_csv_starts_like_a_formula(text: str) -> None:
    written = to_csv(["text"], [[text]])
    _header, (cell,) = csv.reader(io.StringIO(written, newline=""))
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert cell in (text, "'" + text)


def test_a_negative_number_stays_a_number_in_a_billing_csv() -> None:
    written = to_csv(["consumption_m3", "distance_s", "note"], [[Decimal("-1.5"), -3, "-1.5"]])
    assert written.splitlines()[1] == "-1.5,-3,'-1.5"
