"""An account one of whose lines has no read to bill from (a meter fitted, not read yet) is answered,
its quality ``missing``. Before, the line's quality ``missing`` was no quality the account's weakest
knew (server.billing.service.weakest), and GET /billing/determinants answered 500 for the account.
With an installation job card, the card opens each of the meter's lines up to its first read
(test_installation_card_opens_until_first_read.py): the line is then ``substituted``, its
consumption unknown all the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from tests.server.test_job_card_corrected_late import _meters_file, _register

EXCHANGE = datetime(2026, 10, 19, 12, tzinfo=UTC)  # M removed, N fitted (_meters_file's exchange)


@pytest.mark.parametrize("initial", ["0.500", ""])
def test_an_account_with_a_meter_fitted_and_not_read_yet_is_answered_missing(
    migrated_database_url: str, tmp_path: Path, initial: str
) -> None:
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'x')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "VALUES ('A-1', 'SP-1', '2025-01-01Z')"
        )
    _register(url, _meters_file(tmp_path / "meters.csv", initial=initial, final="104.555"))
    with (
        psycopg.connect(url, autocommit=True) as conn,
        conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy,
    ):
        for h in range(36):  # M's reads up to the exchange; N has none
            copy.write_row(("M", EXCHANGE - timedelta(hours=36 - h), Decimal("104.200") + Decimal("0.010") * h))
    with TestClient(create_app(url)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        # November: N's line has no read either side; it opens on the card, when there is one
        answer = client.get("/billing/determinants?period=2026-11&account=A-1", headers=headers)
        assert answer.status_code == 200, answer.text
        (account,) = answer.json()["items"]
        (line,) = account["lines"]
        opening = {"ts": "2026-10-19T12:00:00Z", "volume_m3": initial, "quality": "substituted"} if initial else None
        quality = "substituted" if initial else "missing"
        assert (line["meter_id"], line["opening"], line["closing"], line["quality"]) == ("N", opening, None, quality)
        assert (account["quality"], account["consumption_m3"], account["complete"]) == (quality, None, False)
        # October: M's line, and N's opening on its installation card, with nothing to close on
        answer = client.get("/billing/determinants?period=2026-10&account=A-1", headers=headers)
        assert answer.status_code == 200, answer.text
        (account,) = answer.json()["items"]
        assert [(line["meter_id"], line["quality"]) for line in account["lines"]] == [
            ("M", "substituted"),
            ("N", "substituted" if initial else "missing"),
        ]
