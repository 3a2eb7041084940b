"""A person's register value out of order with the meter's stored reads is refused unless confirmed.

The billing integrator's walkthrough: a correction of 480.937 to 1.000 (a typo), on a register that
read about 480.9 the hour before and 481.0 the hour after, was stored (200). VEE took the drop for a
meter replacement (481.8 m³ of consumption) and detection the rise back for a burst of 480,040 L/h,
offered to billing as 480.041 m³ of leak. Now it is a 409 problem naming the reads either side, with
nothing stored, and VEE and detection find nothing; sent again with ``"out_of_sequence":
"confirmed"`` it is stored, as a person meant it. Through the real API, VEE, detection and database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.detection.alerts import AlertKind
from collector.detection_job import DetectionJobConfig, run_detection_once
from collector.vee.runner import run_vee
from server.app import create_app
from server.auth import create_api_key
from tests.collector.test_detection_households import household, registers
from tests.server.test_billing_vee_issues import _setup

START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 21
TYPO_AT = START + timedelta(days=20, hours=10)  # the read corrected, on the last day
END = START + timedelta(days=DAYS)
METER = "WM-480"


def _registers() -> list[Decimal]:
    """A household's hourly registers, the one at TYPO_AT reading 480.937 m³."""
    volumes = registers(household(np.random.default_rng(11), DAYS)[None, :])[0]
    at = int((TYPO_AT - START).total_seconds() // 3600)
    shift = Decimal("480.937") - Decimal(f"{volumes[at]:.3f}")
    return [Decimal(f"{v:.3f}") + shift for v in volumes]


@pytest.fixture
def walkthrough(migrated_database_url: str) -> Iterator[tuple[TestClient, str, list[Decimal]]]:
    volumes = _registers()
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "Bea (meterization)", ["meterization"])
        _setup(conn, METER, [(START - timedelta(days=30), None)])
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for h, volume in enumerate(volumes):
                copy.write_row((METER, START + timedelta(hours=h), volume))
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, key, volumes


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _stored(url: str) -> dict[str, Any]:
    """Everything a correction writes: the readings, their history, VEE's note of late values."""
    with psycopg.connect(url) as conn:
        return {
            "readings": conn.execute("SELECT * FROM readings ORDER BY meter_id, ts").fetchall(),
            "history": conn.execute("SELECT count(*) FROM reading_history").fetchall(),
            "late": conn.execute("SELECT count(*) FROM late_readings").fetchall(),
        }


def _vee_and_detection(url: str, now: datetime) -> tuple[list[str], list[tuple[str, float | None]]]:
    """The rules VEE flags the meter's reads with, and the alerts detection opens on it, at ``now``."""
    with psycopg.connect(url) as conn:
        run_vee(conn, START, now, now=now)
        conn.commit()
        flags = [row[0] for row in conn.execute("SELECT rule FROM vee_flags WHERE meter_id = %s", (METER,))]
        changes = run_detection_once(conn, now, DetectionJobConfig())
        conn.commit()
    return flags, [(a.kind.value, a.rate_l_h) for a in changes.opened if a.meter_id == METER]


def test_the_walkthrough_s_typo_is_refused_naming_the_reads_either_side_and_nothing_changes(
    walkthrough, migrated_database_url
):
    client, key, volumes = walkthrough
    at = int((TYPO_AT - START).total_seconds() // 3600)
    before = _stored(migrated_database_url)
    response = client.put(f"/meters/{METER}/readings/{TYPO_AT.isoformat()}",
                          json={"volume_m3": "1.000", "reason": "register photo"}, headers=_auth(key))  # fmt: skip
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["title"] == "Register out of sequence"
    assert problem["before"] == {
        "ts": (TYPO_AT - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "volume_m3": str(volumes[at - 1]),
        "quality": "actual",
    }
    assert problem["after"] == {
        "ts": (TYPO_AT + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "volume_m3": str(volumes[at + 1]),
        "quality": "actual",
    }
    for said in ("1.000 m³", f"{volumes[at - 1]} m³", f"{volumes[at + 1]} m³", '"out_of_sequence": "confirmed"'):
        assert said in problem["detail"], said
    assert _stored(migrated_database_url) == before
    flags, opened = _vee_and_detection(migrated_database_url, END)
    assert not {"replacement", "register_backwards", "over_max_flow", "bad_read"} & set(flags), flags
    assert opened == []


def test_the_same_value_confirmed_is_stored_as_the_person_means_it(walkthrough, migrated_database_url):
    """What the refusal kept away: confirmed, the value is stored, and VEE and detection take it as
    they did before (a replacement and a burst), as for a value a person stands by."""
    client, key, _ = walkthrough
    body = {"volume_m3": "1.000", "reason": "register photo", "out_of_sequence": "confirmed"}
    response = client.put(f"/meters/{METER}/readings/{TYPO_AT.isoformat()}", json=body, headers=_auth(key))
    assert response.status_code == 200, response.text
    assert (Decimal(response.json()["volume_m3"]), response.json()["quality"]) == (Decimal("1.000"), "edited")
    flags, opened = _vee_and_detection(migrated_database_url, END)
    assert "replacement" in flags
    assert AlertKind.BURST.value in [kind for kind, _ in opened], opened


def test_a_correction_in_order_with_the_reads_either_side_is_stored(walkthrough, migrated_database_url):
    client, key, volumes = walkthrough
    at = int((TYPO_AT - START).total_seconds() // 3600)
    for value in (volumes[at - 1], (volumes[at - 1] + volumes[at + 1]) / 2, volumes[at + 1]):
        body = {"volume_m3": str(value), "reason": "register photo"}
        response = client.put(f"/meters/{METER}/readings/{TYPO_AT.isoformat()}", json=body, headers=_auth(key))
        assert response.status_code == 200, response.text
        assert Decimal(response.json()["volume_m3"]) == value
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM reading_history").fetchone() == (3,)


def test_a_supplied_reading_out_of_order_is_refused_unless_confirmed(walkthrough, migrated_database_url):
    """A reading supplied after the last one (a site visit) is held to the same order."""
    client, key, volumes = walkthrough
    later = (END + timedelta(hours=3)).isoformat()
    before = _stored(migrated_database_url)
    body = {"ts": later, "volume_m3": "48.1", "reason": "site visit"}
    refused = client.post(f"/meters/{METER}/readings", json=body, headers=_auth(key))
    assert refused.status_code == 409, refused.text
    assert refused.json()["title"] == "Register out of sequence"
    assert refused.json()["before"]["volume_m3"] == str(volumes[-1]) and refused.json()["after"] is None
    assert _stored(migrated_database_url) == before
    confirmed = client.post(f"/meters/{METER}/readings", json={**body, "out_of_sequence": "confirmed"},
                            headers=_auth(key))  # fmt: skip
    assert confirmed.status_code == 201, confirmed.text
    in_order = client.post(f"/meters/{METER}/readings", json={**body, "ts": (END + timedelta(hours=1)).isoformat(),
                           "volume_m3": str(volumes[-1] + Decimal("0.01"))}, headers=_auth(key))  # fmt: skip
    assert in_order.status_code == 201, in_order.text


@pytest.mark.parametrize("value", ["yes", "true", True, ""])
def test_only_the_word_confirmed_confirms(walkthrough, migrated_database_url, value):
    client, key, _ = walkthrough
    before = _stored(migrated_database_url)
    body = {"volume_m3": "1.000", "reason": "register photo", "out_of_sequence": value}
    response = client.put(f"/meters/{METER}/readings/{TYPO_AT.isoformat()}", json=body, headers=_auth(key))
    assert response.status_code == 422, response.text
    assert "out_of_sequence" in response.json()["detail"]
    assert _stored(migrated_database_url) == before
