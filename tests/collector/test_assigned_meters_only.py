"""``collector run --assigned-meters-only``: no gateway claims a meter nobody assigned.

By default the first gateway heard reporting a meter with no assignment becomes its gateway: a
rogue or misconfigured gateway with the broker's credentials could claim a meter before its own.
With the option its reading is a dead letter, stored by ``assign-meters --replay`` once assigned.
Through a real Mosquitto and TimescaleDB."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest
from typer.testing import CliRunner

from aquami.cli import app
from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for

T0, T1 = "2026-03-01T00:00:00Z", "2026-03-01T01:00:00Z"


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _assign(url: str, *args: str) -> dict:
    result = CliRunner().invoke(app, ["collector", "assign-meters", *args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _gateways(url: str, meter_id: str) -> list[str]:
    sql = f"SELECT gateway_id FROM meter_gateways WHERE meter_id = '{meter_id}' AND until IS NULL ORDER BY 1"
    return [row[0] for row in _rows(url, sql)]


@pytest.mark.parametrize("assigned_only", [False, True], ids=["default-first-heard-claims", "assigned-only"])
def test_a_rogue_gateway_claims_an_unassigned_meter_only_without_the_option(
    migrated_database_url, mosquitto, assigned_only
):
    url = migrated_database_url
    with (
        running_collector(url, mosquitto.url, assigned_meters_only=assigned_only) as collector,
        publisher(mosquitto.url) as publish,
    ):
        _assign(url, "WM-OK", "gw-home-probe", "--gateway", "gw-home")
        _assign(url, "gw-rogue-probe", "--gateway", "gw-rogue")  # its own probes: it is a known gateway
        _ready(publish, url, "gw-home")
        _ready(publish, url, "gw-rogue")
        letters_before = count(url, "SELECT coalesce(max(id), 0) FROM dead_letters")
        messages_before = collector.counters.snapshot()["messages"]
        # the rogue gateway first: a meter assigned ahead, and one nobody assigned yet
        publish("aquami/v1/gw-rogue/reads", reads("gw-rogue", 1, [("WM-OK", T0, 9999.0), ("WM-NEW", T0, 9999.0)]))
        # then the meters' own gateway
        publish("aquami/v1/gw-home/reads", reads("gw-home", 1, [("WM-OK", T0, 1.5), ("WM-NEW", T0, 2.5)]))
        wait_for(lambda: collector.counters.snapshot()["messages"] >= messages_before + 2, 20, "both messages")
        assert _rows(url, "SELECT volume_m3, gateway_id FROM readings WHERE meter_id = 'WM-OK'") == [
            (Decimal("1.5"), "gw-home")
        ]
        letters = _rows(
            url, f"SELECT meter_id, gateway_id, reason FROM dead_letters WHERE id > {letters_before} ORDER BY id"
        )
        new = _rows(url, "SELECT volume_m3, gateway_id FROM readings WHERE meter_id = 'WM-NEW'")
        if not assigned_only:  # the rogue one claimed it: its 9999 stored, the home gateway's refused
            assert _gateways(url, "WM-NEW") == ["gw-rogue"]
            assert new == [(Decimal("9999.0"), "gw-rogue")]
            assert [(m, g) for m, g, _ in letters] == [("WM-OK", "gw-rogue"), ("WM-NEW", "gw-home")]
            return
        assert _gateways(url, "WM-NEW") == []  # claimed by neither
        assert new == []
        by_letter = {(m, g): reason for m, g, reason in letters}
        assert sorted(by_letter) == [("WM-NEW", "gw-home"), ("WM-NEW", "gw-rogue"), ("WM-OK", "gw-rogue")]
        assert len(letters) == 3
        assert by_letter["WM-NEW", "gw-home"] == (
            "meter WM-NEW is assigned to no gateway and this collector stores only meters assigned ahead "
            "(--assigned-meters-only): if gw-home is its gateway, "
            "aquami collector assign-meters WM-NEW --gateway gw-home --replay stores this"
        )
        assert collector.counters.snapshot()["dead_letters"] == 3  # none of the probes
        # nothing lost: assigned to its gateway, its refused reading is stored; the rogue's is kept a letter
        replayed = _assign(url, "WM-NEW", "--gateway", "gw-home", "--replay")["replayed"]
        assert (replayed["letters"], replayed["readings_stored"]) == (1, 1)
        assert _rows(url, "SELECT volume_m3, gateway_id FROM readings WHERE meter_id = 'WM-NEW'") == [
            (Decimal("2.5"), "gw-home")
        ]
        # and from then on the assigned meter's readings are stored as they come
        publish("aquami/v1/gw-home/reads", reads("gw-home", 2, [("WM-NEW", T1, 2.75)]))
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'WM-NEW'") == 2, 20, "the next")
        assert count(url, f"SELECT count(*) FROM dead_letters WHERE id > {letters_before}") == 2


@pytest.mark.parametrize("command", [["run"], ["leave-group", "--client-id", "gone", "--shared-group", "g"]])
def test_assigned_meters_only_with_trust_all_gateways_is_refused(command: list[str]) -> None:
    """Before any database or broker is reached (neither is there)."""
    given = ["--mqtt-url", "mqtt://127.0.0.1:1", "--database-url", "postgresql://127.0.0.1:1/none"]
    result = CliRunner().invoke(app, ["collector", *command, *given, "--assigned-meters-only", "--trust-all-gateways"])
    assert result.exit_code == 2
    assert "give one of the two" in result.output


INVENTED = 40  # meter ids a rogue gateway makes up


@pytest.mark.parametrize("assigned_only", [False, True], ids=["default-first-heard-registers", "assigned-only"])
def test_a_rogue_gateway_s_invented_meters_are_not_registered_with_the_option(
    migrated_database_url, mosquitto, assigned_only
):
    """A gateway with the broker's credentials reports readings and a meter event of meters nobody
    assigned (ids it made up). By default the first gateway heard registers and claims them, as
    before. With the option they are dead letters and nothing else: no ``meters`` row (before, one
    each, which the care desk and billing list), not counted as new meters; assigned with
    ``--replay``, a meter is registered and its reading stored."""
    url = migrated_database_url
    invented = [f"FAKE-{i:03d}" for i in range(INVENTED)]
    fake_rows = "SELECT count(*) FROM meters WHERE meter_id LIKE 'FAKE-%'"
    with (
        running_collector(url, mosquitto.url, assigned_meters_only=assigned_only) as collector,
        publisher(mosquitto.url) as publish,
    ):
        _assign(url, "gw-forger-probe", "--gateway", "gw-forger")  # its own probe: a known gateway
        _ready(publish, url, "gw-forger")
        before = collector.counters.snapshot()
        publish("aquami/v1/gw-forger/reads", reads("gw-forger", 1, [(m, T0, 1.0 + i) for i, m in enumerate(invented)]))
        event = {"gateway_id": "gw-forger", "event": "meter_offline", "ts": T0, "meter_id": "FAKE-EVENT", "bus": "b"}
        publish(
            "aquami/v1/gw-forger/events", json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode()
        )
        wait_for(lambda: collector.counters.snapshot()["messages"] >= before["messages"] + 2, 20, "both messages")
        after = collector.counters.snapshot()
    new_meters, letters = after["new_meters"] - before["new_meters"], after["dead_letters"] - before["dead_letters"]
    stored = count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'FAKE-%'")
    claimed = count(url, "SELECT count(*) FROM meter_gateways WHERE meter_id LIKE 'FAKE-%'")
    if not assigned_only:  # unchanged: the first gateway heard registers and claims them
        assert (count(url, fake_rows), claimed, stored, new_meters, letters) == (
            INVENTED + 1,
            INVENTED + 1,
            INVENTED,
            INVENTED + 1,
            0,
        )
        return
    assert (count(url, fake_rows), claimed, stored, new_meters, letters) == (0, 0, 0, 0, INVENTED + 1)
    assert count(url, "SELECT count(*) FROM dead_letters WHERE meter_id LIKE 'FAKE-%'") == INVENTED + 1
    # nothing lost: one of them assigned after all, its reading is stored and it is registered once
    replayed = _assign(url, "FAKE-007", "--gateway", "gw-forger", "--replay")["replayed"]
    assert (replayed["letters"], replayed["readings_stored"]) == (1, 1)
    assert _rows(url, "SELECT meter_id, has_readings FROM meters WHERE meter_id LIKE 'FAKE-%'") == [("FAKE-007", True)]
    assert _rows(url, "SELECT volume_m3 FROM readings WHERE meter_id LIKE 'FAKE-%'") == [(Decimal("8.0"),)]
