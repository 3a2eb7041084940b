"""A correction of a meter's newest read is judged faster than the meter by the settings VEE itself
runs with (``default_max_flow_m3h``, ``max_flow_slack``, recorded by each VEE run: server migration
0065), not VeeConfig's defaults. Before, the server judged by 5 m³/h and 5 % whatever the collector's
VEE was configured with: at 20 m³/h a site visit's read VEE takes was refused, and at 2 m³/h one VEE
then flags ``over_max_flow`` was stored."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg

from collector.vee.config import VeeConfig
from collector.vee.runner import run_vee
from tests.server.test_reading_correction_order import (
    END,
    METER,
    START,
    _auth,
    walkthrough,  # noqa: F401 (the fixture)
)

NEWEST = END  # the walkthrough's newest read


def _vee(url: str, config: VeeConfig) -> list[str]:
    """VEE over the walkthrough with ``config``, as `aquami collector vee --config` runs it: its flags."""
    now = NEWEST + timedelta(hours=4)
    with psycopg.connect(url) as conn:
        run_vee(conn, START, now, config, now=now)
        conn.commit()
        return [row[0] for row in conn.execute("SELECT rule FROM vee_flags WHERE meter_id = %s", (METER,))]


def _visit(hours_after: int, water_m3: Decimal, volumes: list[Decimal]) -> dict[str, str]:
    ts = NEWEST + timedelta(hours=hours_after)
    return {"ts": ts.isoformat(), "volume_m3": str(volumes[-1] + water_m3), "reason": "site visit"}


def test_a_read_vee_takes_at_its_configured_default_is_taken(walkthrough, migrated_database_url):  # noqa: F811
    """VEE configured for bigger meters (20 m³/h): 12 m³ in an hour is within it, for VEE and for the
    correction alike (before: 409, judged by 5 m³/h)."""
    client, key, volumes = walkthrough
    _vee(migrated_database_url, VeeConfig(default_max_flow_m3h=20))
    response = client.post(f"/meters/{METER}/readings", json=_visit(1, Decimal(12), volumes), headers=_auth(key))
    assert response.status_code == 201, response.text
    assert "over_max_flow" not in _vee(migrated_database_url, VeeConfig(default_max_flow_m3h=20))


def test_a_read_vee_would_flag_at_its_configured_default_is_refused(walkthrough, migrated_database_url):  # noqa: F811
    """VEE configured for small meters (2 m³/h): 6 m³ in two hours (3 m³/h) is over it, and refused
    naming 2 m³/h as VEE's default (before: stored, VEE then flagging it over_max_flow)."""
    client, key, volumes = walkthrough
    _vee(migrated_database_url, VeeConfig(default_max_flow_m3h=2))
    body = _visit(2, Decimal(6), volumes)
    refused = client.post(f"/meters/{METER}/readings", json=body, headers=_auth(key))
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["title"] == "Register faster than the meter"
    assert problem["max_flow_m3h"] == 2.0
    assert "maximum flow of 2 m³/h (VEE's default" in problem["detail"], problem["detail"]
    confirmed = client.post(
        f"/meters/{METER}/readings", json={**body, "out_of_sequence": "confirmed"}, headers=_auth(key)
    )
    assert confirmed.status_code == 201, confirmed.text
    assert "over_max_flow" in _vee(migrated_database_url, VeeConfig(default_max_flow_m3h=2))  # what was kept away


def test_the_slack_vee_runs_with_is_the_check_s(walkthrough, migrated_database_url):  # noqa: F811
    """5.4 m³ in an hour at 5 m³/h: within a slack of 10 %, over VeeConfig's 5 %."""
    client, key, volumes = walkthrough
    _vee(migrated_database_url, VeeConfig(max_flow_slack=0.10))
    response = client.post(f"/meters/{METER}/readings", json=_visit(1, Decimal("5.4"), volumes), headers=_auth(key))
    assert response.status_code == 201, response.text
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT default_max_flow_m3h, max_flow_slack FROM vee_settings").fetchall() == [(5.0, 0.10)]


def test_the_last_run_s_settings_are_the_ones_judged_by(walkthrough, migrated_database_url):  # noqa: F811
    """A run with other settings replaces the record: the check follows VEE as it runs now."""
    client, key, volumes = walkthrough
    _vee(migrated_database_url, VeeConfig(default_max_flow_m3h=20))
    _vee(migrated_database_url, VeeConfig())
    response = client.post(f"/meters/{METER}/readings", json=_visit(1, Decimal(12), volumes), headers=_auth(key))
    assert response.status_code == 409, response.text
    assert response.json()["max_flow_m3h"] == 5.0
