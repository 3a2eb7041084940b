"""The list filters take every value their column can hold. ``GET /alerts?dma=`` and ``GET
/enquiries?dma=`` take a district of any length, and so the longest register-meters writes (its
``dma`` is free text of at most ``DMA_MAX_LENGTH`` characters; alerts and enquiries copy the
meter's; a database from before it checked may hold longer ones); before, they took 64 characters at
most and answered 422 for a longer district, whose alerts and enquiries no filter could then find.
The account and category filters keep a limit, pinned here to what their writers can store:
register-accounts takes an identifier (at most ``IDENTIFIER_MAX_LENGTH``), and categories are
written only by the server's migrations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aquami.cli import app
from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH
from aquami.districts import DMA_MAX_LENGTH
from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key
from server.care.schemas import CATEGORY_MAX_LENGTH
from server.open311.schemas import SERVICE_CODE_MAX_LENGTH

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)
#: districts of the contract's length, one over it, and the longest register-meters takes (4-byte characters)
DMAS = {
    "D64": "D" * 64,
    "D65": "D" * 64 + "5",
    "DMAX": "Hillside reservoir zone " + "\U0001f4a7" * (DMA_MAX_LENGTH - 24),
}
ACCOUNT = "A" * IDENTIFIER_MAX_LENGTH  # the longest register-accounts takes


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), terminal_width=300)
    return result.exit_code, result.output


def _raise_burst(conn: psycopg.Connection[Any], meter_id: str, hours: int) -> str:
    """A burst on the meter, in the district meters holds for it (as detection stores it); its id."""
    row = conn.execute("SELECT dma FROM meters WHERE meter_id = %s", (meter_id,)).fetchone()
    assert row is not None
    at = T0 + timedelta(hours=hours)
    burst = new_alert(
        AlertKind.BURST, meter_id, row[0], start=at - timedelta(hours=1), detected_at=at, last_seen=at,
        ended_at=None, rate_l_h=200.0, volume_l=200.0, confidence=0.9, evidence=((at - timedelta(hours=1), at),),
    ).replace(updated_at=at)  # fmt: skip
    save_changes(conn, AlertChanges(opened=[burst]))
    return burst.alert_id


@pytest.fixture
def office(tmp_path: Path, migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    """Meters registered through register-meters, one per district of ``DMAS`` and one fitted at a
    service point of the longest account register-accounts takes, each with a burst (and its
    enquiry); a reader's key; each meter's alert id."""
    url = migrated_database_url
    meters = tmp_path / "meters.csv"
    meters.write_text(
        "meter_id,dma,role,service_point_id,installed_at\n"
        + "".join(f"{name},{dma},customer,,\n" for name, dma in DMAS.items())
        + "WM-ACC,D1,customer,SP-1,2026-01-01T00:00:00Z\n"
    )
    code, output = _run("server", "register-meters", str(meters), "--database-url", url)
    assert code == 0, output
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(f"account_id,name,service_point_id,start_at\n{ACCOUNT},Long account,SP-1,2026-01-01T00:00Z\n")
    code, output = _run("server", "register-accounts", str(accounts), "--database-url", url)
    assert code == 0, output
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "Test reader", ["reader"])
        alerts = {meter: _raise_burst(conn, meter, n) for n, meter in enumerate([*DMAS, "WM-ACC"])}
    with TestClient(create_app(url), headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, alerts, {"key": key}


def test_a_district_of_any_length_is_found_by_the_alerts_and_enquiries_filters(office) -> None:
    client, alerts, _ = office
    for meter, dma in DMAS.items():
        found = client.get("/alerts", params={"dma": dma})
        assert found.status_code == 200, (len(dma), found.text)
        assert [a["alert_id"] for a in found.json()["items"]] == [alerts[meter]]
        enquiries = client.get("/enquiries", params={"dma": dma})
        assert enquiries.status_code == 200, (len(dma), enquiries.text)
        assert [(e["alert_id"], e["dma"]) for e in enquiries.json()["items"]] == [(alerts[meter], dma)]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/alerts", "/enquiries"):
        (dma_parameter,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "dma"]
        assert "maxLength" not in dma_parameter["schema"]["anyOf"][0]  # as meters holds


def _max_length(client: TestClient, name: str) -> int:
    parameters = client.get("/openapi.json").json()["paths"]["/enquiries"]["get"]["parameters"]
    (parameter,) = [p for p in parameters if p["name"] == name]
    return int(parameter["schema"]["anyOf"][0]["maxLength"])


def test_the_account_filter_takes_what_register_accounts_stores_and_no_more(
    office, tmp_path: Path, migrated_database_url: str
) -> None:
    """register-accounts stores account ids of at most IDENTIFIER_MAX_LENGTH characters, refusing a
    longer one in one line, and ``GET /enquiries?account=`` takes exactly as many: the longest is found,
    one longer is a 422 (it can name no stored account)."""
    client, alerts, _ = office
    assert _max_length(client, "account") == IDENTIFIER_MAX_LENGTH
    found = client.get("/enquiries", params={"account": ACCOUNT})
    assert found.status_code == 200, found.text
    assert [(e["alert_id"], e["account_id"]) for e in found.json()["items"]] == [(alerts["WM-ACC"], ACCOUNT)]
    assert client.get("/enquiries", params={"account": ACCOUNT + "A"}).status_code == 422
    longer = tmp_path / "longer.csv"
    longer.write_text(f"account_id,name,service_point_id,start_at\n{ACCOUNT}A,Longer,SP-1,2027-01-01T00:00Z\n")
    code, output = _run("server", "register-accounts", str(longer), "--database-url", migrated_database_url)
    assert code == 2 and f"at most {IDENTIFIER_MAX_LENGTH}" in output, output


def test_every_category_a_writer_stores_is_within_the_category_filters(office, migrated_database_url: str) -> None:
    """Enquiries are filed under the categories of detection's rules (alert_enquiry_rules) and of the
    people's services (open311_services), both written by the server's migrations alone: each is
    within what GET /enquiries and the care desk take, and the longest is found by both."""
    client, _, _ = office
    assert _max_length(client, "category") == CATEGORY_MAX_LENGTH
    with psycopg.connect(migrated_database_url) as conn:
        categories = [
            row[0]
            for row in conn.execute(
                "SELECT category FROM alert_enquiry_rules UNION SELECT category FROM open311_services "
                "UNION SELECT category FROM open311_service_list"
            ).fetchall()
        ]
    longest = max(categories, key=len)
    assert len(longest) <= CATEGORY_MAX_LENGTH, longest
    assert client.get("/enquiries", params={"category": longest}).status_code == 200
    assert client.get("/care/enquiries", params={"category": longest}).status_code == 200
    too_long = "c" * (CATEGORY_MAX_LENGTH + 1)
    assert client.get("/enquiries", params={"category": too_long}).status_code == 422
    refused = client.get("/care/enquiries", params={"category": too_long})
    assert refused.status_code == 400 and f"at most {CATEGORY_MAX_LENGTH} characters" in refused.text


def test_every_service_code_stored_is_one_a_request_may_name(migrated_database_url: str) -> None:
    """POST /requests takes a service_code of at most SERVICE_CODE_MAX_LENGTH characters: every code
    the services list holds (people's services and detection's ``detected_`` ones) is within it."""
    with psycopg.connect(migrated_database_url) as conn:
        codes = [row[0] for row in conn.execute("SELECT service_code FROM open311_service_list").fetchall()]
    assert codes and max(map(len, codes)) <= SERVICE_CODE_MAX_LENGTH, max(codes, key=len)
