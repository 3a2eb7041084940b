"""A typo upward on a meter's newest read is refused (409) unless confirmed, through the real API.

4809.37 for 480.937 on the meter's newest read is in order (no read after it to be above), so the
register-order check took it (200): VEE then flagged the interval ``over_max_flow`` and detection
opened a burst of 4,329,459 L/h. Now a value with
no measured read after it whose water since the read before it is more than the meter's maximum
flow passes (VEE's rule and limit: the meter's own ``max_flow_m3h``, else VEE's default 5 m³/h, with
``max_flow_slack``) is a 409 problem, "Register faster than the meter", with nothing stored.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg

from tests.server.test_reading_correction_order import (
    END,
    METER,
    _auth,
    _stored,
    _vee_and_detection,
    walkthrough,  # noqa: F401 (the fixture)
)

NEWEST = END  # the walkthrough's newest read


def _zulu(hours_before_newest: int) -> str:
    return (NEWEST - timedelta(hours=hours_before_newest)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _typo(volume: Decimal) -> Decimal:
    """The register with its decimal point one place to the right: 480.937 → 4809.370."""
    return volume * 10


def test_a_typo_upward_on_the_newest_read_is_refused_and_nothing_changes(walkthrough, migrated_database_url):  # noqa: F811
    client, key, volumes = walkthrough
    before = _stored(migrated_database_url)
    typo = _typo(volumes[-1])
    response = client.put(f"/meters/{METER}/readings/{NEWEST.isoformat()}",
                          json={"volume_m3": str(typo), "reason": "register photo"}, headers=_auth(key))  # fmt: skip
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["title"] == "Register faster than the meter"
    assert problem["before"] == {"ts": _zulu(1), "volume_m3": str(volumes[-2]), "quality": "actual"}
    assert problem["after"] is None
    assert problem["max_flow_m3h"] == 5.0
    assert problem["flow_m3h"] == round(float(typo - volumes[-2]), 3)  # over one hour
    for said in (f"{typo} m³", f"{volumes[-2]} m³", "maximum flow of 5 m³/h (VEE's default", '"confirmed"'):
        assert said in problem["detail"], said
    assert _stored(migrated_database_url) == before
    flags, opened = _vee_and_detection(migrated_database_url, NEWEST + timedelta(hours=1))
    assert "over_max_flow" not in flags and opened == [], (flags, opened)


def test_the_typo_confirmed_is_stored_and_vee_flags_it(walkthrough, migrated_database_url):  # noqa: F811
    """What the refusal keeps away: stored, VEE flags the interval over the meter's maximum flow and
    detection opens a burst of it."""
    client, key, volumes = walkthrough
    body = {"volume_m3": str(_typo(volumes[-1])), "reason": "register photo", "out_of_sequence": "confirmed"}
    response = client.put(f"/meters/{METER}/readings/{NEWEST.isoformat()}", json=body, headers=_auth(key))
    assert response.status_code == 200, response.text
    assert (Decimal(response.json()["volume_m3"]), response.json()["quality"]) == (_typo(volumes[-1]), "edited")
    flags, opened = _vee_and_detection(migrated_database_url, NEWEST + timedelta(hours=1))
    assert "over_max_flow" in flags, flags
    assert "burst" in [kind for kind, _ in opened], opened  # 4,329,459 L/h here


def test_the_meter_s_own_maximum_flow_is_the_limit(walkthrough, migrated_database_url):  # noqa: F811
    """A meter recorded as passing 5000 m³/h (a bulk meter's) can rise 4,300 m³ in an hour; one of
    5 m³/h, recorded, holds the newest read to it as the default does."""
    client, key, volumes = walkthrough
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("UPDATE meters SET max_flow_m3h = 5000 WHERE meter_id = %s", (METER,))
    body = {"volume_m3": str(_typo(volumes[-1])), "reason": "register photo"}
    taken = client.put(f"/meters/{METER}/readings/{NEWEST.isoformat()}", json=body, headers=_auth(key))
    assert taken.status_code == 200, taken.text
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("UPDATE meters SET max_flow_m3h = 5 WHERE meter_id = %s", (METER,))
    later = {
        "ts": (NEWEST + timedelta(hours=1)).isoformat(),
        "volume_m3": str(_typo(volumes[-1]) + 6),
        "reason": "visit",
    }
    refused = client.post(f"/meters/{METER}/readings", json=later, headers=_auth(key))
    assert refused.status_code == 409, refused.text
    assert refused.json()["title"] == "Register faster than the meter"
    assert "maximum flow of 5 m³/h. It is" in refused.json()["detail"]  # the meter's own: no "default"


def test_a_newest_read_within_the_meter_s_flow_is_stored(walkthrough, migrated_database_url):  # noqa: F811
    """A site visit's read two hours after the last one, 10 m³ above it: 5 m³/h, the default's limit."""
    client, key, volumes = walkthrough
    body = {"ts": (NEWEST + timedelta(hours=2)).isoformat(), "volume_m3": str(volumes[-1] + 10), "reason": "visit"}
    response = client.post(f"/meters/{METER}/readings", json=body, headers=_auth(key))
    assert response.status_code == 201, response.text
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM readings WHERE quality = 'substituted'").fetchone() == (1,)
