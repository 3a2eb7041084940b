"""A correction confirmed past a check records which check its person overrode, beside who and when.

Sent again with ``"out_of_sequence": "confirmed"`` after a 409, a register out of sequence (1.000
between reads of about 480.9 and 481.0) or a newest read faster than the meter was stored with its
reason alone: nothing said a person had overridden a check, nor which. Now the reading says it
(``quality_overrode``: ``out_of_sequence`` or ``faster_than_the_meter``, beside ``quality_by``), its
history keeps it with the version it belongs to and, on the version it replaced, as
``superseded_overrode`` beside ``superseded_by`` and ``superseded_at`` (server migration 0066). A
value the checks take overrides nothing, confirmed or not. Through the real API and database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.server.test_reading_correction_order import (
    END,
    METER,
    TYPO_AT,
    _auth,
    walkthrough,  # noqa: F401 (the fixture)
)

WHO = "Bea (meterization)"  # the walkthrough's key


def _reading(client: TestClient, key: str, ts: str) -> dict[str, Any]:
    page = client.get(f"/meters/{METER}/readings", params={"from": ts, "limit": 1}, headers=_auth(key))
    assert page.status_code == 200, page.text
    (item,) = page.json()["items"]
    return dict(item)


def _history(client: TestClient, key: str, ts: str) -> list[dict[str, Any]]:
    answer = client.get(f"/meters/{METER}/readings/{ts}/history", headers=_auth(key))
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_a_value_out_of_sequence_confirmed_records_the_check_overridden(walkthrough):  # noqa: F811
    client, key, _ = walkthrough
    ts = TYPO_AT.isoformat()
    body = {"volume_m3": "1.000", "reason": "meter exchanged on site", "out_of_sequence": "confirmed"}
    asked = datetime.now(UTC) - timedelta(seconds=1)  # (the database's clock and this one's)
    stored = client.put(f"/meters/{METER}/readings/{ts}", json=body, headers=_auth(key))
    assert stored.status_code == 200, stored.text
    assert stored.json()["quality_overrode"] == "out_of_sequence"
    assert (stored.json()["quality"], stored.json()["quality_by"]) == ("edited", WHO)
    when = datetime.fromisoformat(stored.json()["quality_overrode_at"])
    assert asked <= when <= datetime.now(UTC)
    assert _reading(client, key, ts)["quality_overrode"] == "out_of_sequence"  # as the readings list reads it back
    (original,) = _history(client, key, ts)  # the actual read it replaced, and who overrode what replacing it
    assert (original["quality"], original["quality_overrode"]) == ("actual", None)
    assert (original["superseded_by"], original["superseded_overrode"]) == (WHO, "out_of_sequence")
    assert original["superseded_at"]

    # corrected again, in order: the new version overrides nothing; the confirmed one keeps its record
    again = client.put(f"/meters/{METER}/readings/{ts}", json={"volume_m3": "480.937", "reason": "typo"},
                       headers=_auth(key))  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.json()["quality_overrode"] is None and again.json()["quality_overrode_at"] is None
    confirmed = _history(client, key, ts)[1]
    assert (confirmed["volume_m3"], confirmed["quality_overrode"]) == ("1.000", "out_of_sequence")
    assert confirmed["superseded_overrode"] is None
    assert asked <= datetime.fromisoformat(original["superseded_at"]) <= datetime.now(UTC)  # the override's time


def test_a_newest_read_faster_than_the_meter_confirmed_records_that_check(walkthrough):  # noqa: F811
    client, key, volumes = walkthrough
    ts = (END + timedelta(hours=1)).isoformat()
    body = {"ts": ts, "volume_m3": str(volumes[-1] + 50), "reason": "site visit", "out_of_sequence": "confirmed"}
    stored = client.post(f"/meters/{METER}/readings", json=body, headers=_auth(key))
    assert stored.status_code == 201, stored.text
    assert (stored.json()["quality"], stored.json()["quality_overrode"]) == ("substituted", "faster_than_the_meter")


def test_a_value_the_checks_take_overrides_nothing_confirmed_or_not(walkthrough):  # noqa: F811
    client, key, volumes = walkthrough
    ts = (END + timedelta(hours=2)).isoformat()
    body = {"ts": ts, "volume_m3": str(volumes[-1] + Decimal("0.5")), "reason": "visit", "out_of_sequence": "confirmed"}
    stored = client.post(f"/meters/{METER}/readings", json=body, headers=_auth(key))
    assert stored.status_code == 201, stored.text
    assert stored.json()["quality_overrode"] is None


def test_the_meter_s_own_read_replacing_a_confirmed_edit_of_an_estimate_carries_no_override(
    walkthrough,  # noqa: F811
    migrated_database_url: str,
):
    """An actual read arriving for an edited estimate replaces it (collector.store), and is no
    person's: it overrode nothing, whatever its UPDATE leaves in the column; the history keeps it."""
    client, key, _ = walkthrough
    ts = TYPO_AT + timedelta(minutes=30)  # between two hourly reads: VEE's estimate would stand here
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
            "VALUES (%s, %s, 480.95, 'estimated', 'vee:linear', 'gap')",
            (METER, ts),
        )
    body = {"volume_m3": "1.000", "reason": "photo", "out_of_sequence": "confirmed"}
    edited = client.put(f"/meters/{METER}/readings/{ts.isoformat()}", json=body, headers=_auth(key))
    assert edited.json()["quality_overrode"] == "out_of_sequence", edited.text
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:  # collector.store's _REPLACE_ESTIMATES
        conn.execute(
            "UPDATE readings SET volume_m3 = 480.951, quality = 'actual', quality_by = NULL, quality_by_key_id = NULL, "
            "quality_reason = NULL, received_at = now() WHERE meter_id = %s AND ts = %s",
            (METER, ts),
        )
        row = conn.execute(
            "SELECT quality, quality_overrode FROM readings WHERE meter_id = %s AND ts = %s", (METER, ts)
        ).fetchone()
    assert row == ("actual", None)
    assert [v["quality_overrode"] for v in _history(client, key, ts.isoformat())] == [None, "out_of_sequence"]
