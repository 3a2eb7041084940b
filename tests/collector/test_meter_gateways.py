"""A gateway reports only the meters assigned to it (collector migration 0066).

The broker's ACL pins a gateway to its own topic, and the collector holds a message's gateway_id to
its topic; nothing held a gateway to its own meters: gw-b stored 99999.0 m3 for gw-a's meter an hour
ahead, and gw-a's real 100.02 went to reading_conflicts."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from aquami.contracts.events import events_topic
from collector.batch_parser import ParsedMessage, parse_reads_message
from collector.events_parser import parse_events_message
from collector.store import ReadingStore
from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for

T0, T1 = "2026-03-01T00:00:00Z", "2026-03-01T02:00:00Z"
LETTERS = "SELECT meter_id, gateway_id, reason, topic FROM dead_letters WHERE meter_id IS NOT NULL ORDER BY id"


def _readings(url: str, meter_id: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT to_char(ts AT TIME ZONE 'UTC', 'HH24:MI'), volume_m3, gateway_id FROM readings "
            "WHERE meter_id = %s ORDER BY ts",
            (meter_id,),
        ).fetchall()


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _assign(url: str, *args: str) -> dict:
    result = CliRunner().invoke(app, ["collector", "assign-meters", *args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _write(store: ReadingStore, gateway: str, seq: int, readings: list[tuple[str, str, float]]) -> None:
    parsed = parse_reads_message(f"aquami/v1/{gateway}/reads", reads(gateway, seq, readings))
    assert isinstance(parsed, ParsedMessage)
    store.write_messages([parsed])


def test_a_gateway_cannot_store_readings_or_events_for_another_gateway_s_meter(migrated_database_url, mosquitto):
    """The reviewer's proof through Mosquitto and the collector: gw-b's forged reading of gw-a's
    meter is a dead letter, its own meter in the same message is stored, and gw-a's real reading
    at the same hour is stored, not kept as a conflict."""
    url = migrated_database_url
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, "gw-a")
        _ready(publish, url, "gw-b")
        publish("aquami/v1/gw-a/reads", reads("gw-a", 1, [("WM-A-1", T0, 100.0)]))
        wait_for(lambda: len(_readings(url, "WM-A-1")) == 1, 20, "gw-a's first reading")
        publish("aquami/v1/gw-b/reads", reads("gw-b", 1, [("WM-A-1", T1, 99999.0), ("WM-B-1", T1, 7.5)]))
        event = {"gateway_id": "gw-b", "event": "meter_offline", "ts": T1, "meter_id": "WM-A-1", "bus": "b"}
        publish(events_topic("gw-b"), json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode())
        wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") == 2, 20, "gw-b's dead letters")
        publish("aquami/v1/gw-a/reads", reads("gw-a", 2, [("WM-A-1", T1, 100.02)]))
        wait_for(lambda: len(_readings(url, "WM-A-1")) == 2, 20, "gw-a's real reading")
        assert collector.counters.snapshot()["dead_letters"] == 2
    assert _readings(url, "WM-A-1") == [("00:00", Decimal("100.0"), "gw-a"), ("02:00", Decimal("100.02"), "gw-a")]
    assert _readings(url, "WM-B-1") == [("02:00", Decimal("7.5"), "gw-b")]
    assert count(url, "SELECT count(*) FROM reading_conflicts") == 0
    assert count(url, "SELECT count(*) FROM events") == 0
    reason = "meter WM-A-1 is assigned to gateway gw-a, not gw-b"
    assert _rows(url, LETTERS) == [
        ("WM-A-1", "gw-b", reason, "aquami/v1/gw-b/reads"),
        ("WM-A-1", "gw-b", reason, "aquami/v1/gw-b/events"),
    ]
    payload = _rows(url, "SELECT payload FROM dead_letters WHERE topic LIKE '%/reads'")[0][0]
    assert [r["volume_m3"] for r in json.loads(bytes(payload))["readings"]] == [99999.0]  # the forged one alone


def test_a_meter_two_receivers_hear_is_assigned_to_both(migrated_database_url):
    url = migrated_database_url
    store = ReadingStore(url)
    try:
        _write(store, "rx-1", 1, [("WM-9", T0, 1.5)])  # first heard: rx-1's
        _write(store, "rx-2", 1, [("WM-9", T1, 1.75)])
        assert _readings(url, "WM-9") == [("00:00", Decimal("1.5"), "rx-1")]
        added = _assign(url, "WM-9", "--gateway", "rx-2", "--add")
        assert added == {"meters": {"WM-9": ["rx-1", "rx-2"]}, "moved_from": {}}
        _write(store, "rx-2", 2, [("WM-9", T1, 1.75)])
        _write(store, "rx-1", 2, [("WM-9", "2026-03-01T03:00:00Z", 1.8)])
    finally:
        store.close()
    assert [r[2] for r in _readings(url, "WM-9")] == ["rx-1", "rx-2", "rx-1"]


def test_a_moved_meter_takes_its_new_gateway_s_readings_and_those_refused_before_on_replay(migrated_database_url):
    url = migrated_database_url
    store = ReadingStore(url)
    try:
        _write(store, "gw-old", 1, [("WM-5", T0, 10.0), ("WM-6", T0, 20.0)])
        _write(store, "gw-new", 1, [("WM-5", "2026-03-01T01:00:00Z", 10.5)])  # fitted before the records say so
        assert [m for m, *_ in _rows(url, LETTERS)] == ["WM-5"]
        moved = _assign(url, "--from-gateway", "gw-old", "--gateway", "gw-new", "--replay")
        assert moved["meters"] == {"WM-5": ["gw-new"], "WM-6": ["gw-new"]}
        assert moved["replayed"] == {
            "letters": 1,
            "readings_stored": 1,
            "events_stored": 0,
            "refused_again": 0,
            "kept": 0,
        }
        assert set(moved["moved_from"]) == {"WM-5", "WM-6"} and set(moved["moved_from"]["WM-5"]) == {"gw-old"}
        after = datetime.now(UTC).isoformat().replace("+00:00", "Z")  # measured after the move
        _write(store, "gw-old", 2, [("WM-5", after, 11.5)])  # the old gateway no longer
        _write(store, "gw-new", 2, [("WM-5", T1, 11.0)])
    finally:
        store.close()
    assert _readings(url, "WM-5") == [
        ("00:00", Decimal("10.0"), "gw-old"),
        ("01:00", Decimal("10.5"), "gw-new"),
        ("02:00", Decimal("11.0"), "gw-new"),
    ]
    assert _rows(url, "SELECT meter_id, gateway_id FROM dead_letters") == [("WM-5", "gw-old")]
    shown = _assign(url, "WM-5", "WM-6", "WM-7")
    assert shown["meters"] == {"WM-5": ["gw-new"], "WM-6": ["gw-new"], "WM-7": []}


def test_with_the_check_off_any_gateway_s_readings_are_stored_and_meters_are_still_assigned(migrated_database_url):
    url = migrated_database_url
    store = ReadingStore(url, check_gateways=False)
    try:
        _write(store, "gw-a", 1, [("WM-A-1", T0, 100.0)])
        _write(store, "gw-b", 1, [("WM-A-1", T1, 99999.0)])
    finally:
        store.close()
    assert [r[2] for r in _readings(url, "WM-A-1")] == ["gw-a", "gw-b"]
    assert _rows(url, "SELECT meter_id, gateway_id FROM meter_gateways") == [("WM-A-1", "gw-a")]
    assert count(url, "SELECT count(*) FROM dead_letters") == 0


def test_the_migration_assigns_known_meters_the_gateways_that_delivered_them_in_35_days(database_url, monkeypatch):
    import collector.migrate as migrate_module

    files = migrate_module.migration_files()
    before = [(n, f) for n, f in files if n.startswith("collector/") and n < "collector/0066"]
    monkeypatch.setattr(migrate_module, "migration_files", lambda: before)
    migrate_module.migrate(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id, last_gateway_id) VALUES ('M-1', 'gw-a'), ('M-2', NULL)")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, gateway_id, received_at) VALUES "
            "('M-1', now() - interval '1 hour', 1, 'gw-b', now()), "
            "('M-1', now() - interval '41 days', 1, 'gw-c', now() - interval '40 days'), "
            "('M-2', now() - interval '1 hour', 1, 'gw-b', now())"
        )
        conn.execute(
            "INSERT INTO events (meter_id, ts, event, gateway_id) VALUES ('M-1', now(), 'meter_offline', 'gw-d')"
        )
    monkeypatch.setattr(migrate_module, "migration_files", lambda: files)
    migrate_module.migrate(database_url)
    assert _rows(database_url, "SELECT meter_id, gateway_id, assigned_by FROM meter_gateways ORDER BY 1, 2") == [
        ("M-1", "gw-a", "migration 0066"),
        ("M-1", "gw-b", "migration 0066"),
        ("M-1", "gw-d", "migration 0066"),
        ("M-2", "gw-b", "migration 0066"),
    ]


GATEWAYS = ("gw-a", "gw-b", "gw-c")
METERS = ("M1", "M2", "M3", "M4")
ASSIGNED = {"M1": {"gw-a"}, "M2": {"gw-a", "gw-b"}, "M3": {"gw-c"}}  # M4: nobody's yet
message = st.tuples(
    st.sampled_from(GATEWAYS),
    st.lists(st.tuples(st.sampled_from(METERS), st.integers(0, 5)), min_size=1, max_size=6, unique=True),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(message, min_size=1, max_size=8), cuts=st.sets(st.integers(1, 7)))
def test_stored_readings_are_exactly_those_from_their_meters_gateways(migrated_database_url, messages, cuts):
    """Any messages from assigned and unassigned gateways, written in any batches: exactly the
    readings of assigned gateways are stored (a new meter's first gateway's among them), and each
    other (message, meter) is one dead letter."""
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE readings, meters, dead_letters, reading_conflicts CASCADE")
        for meter, gateways in ASSIGNED.items():
            conn.execute("INSERT INTO meters (meter_id) VALUES (%s)", (meter,))
            for gateway in gateways:
                conn.execute("INSERT INTO meter_gateways VALUES (%s, %s, now(), 'test')", (meter, gateway))
    parsed = []
    for seq, (gateway, keys) in enumerate(messages):
        readings = [(m, f"2026-03-01T0{hour}:00:00Z", 10.0 * int(m[1]) + hour) for m, hour in keys]
        p = parse_reads_message(f"aquami/v1/{gateway}/reads", reads(gateway, seq, readings))
        assert isinstance(p, ParsedMessage)
        parsed.append(p)
    store = ReadingStore(url)
    try:
        bounds = [0, *sorted(c for c in cuts if c < len(parsed)), len(parsed)]
        for start, end in itertools.pairwise(bounds):
            store.write_messages(parsed[start:end])
    finally:
        store.close()
    allowed = {m: set(g) for m, g in ASSIGNED.items()}
    first_m4 = next((g for g, keys in messages if any(m == "M4" for m, _ in keys)), None)
    if first_m4 is not None:
        allowed["M4"] = {first_m4}
    expected = {(m, f"{hour:02d}:00") for g, keys in messages for m, hour in keys if g in allowed.get(m, ())}
    stored = {
        (m, hhmm) for m, hhmm in _rows(url, "SELECT meter_id, to_char(ts AT TIME ZONE 'UTC', 'HH24:MI') FROM readings")
    }
    assert stored == expected
    refused = sorted((g, m) for g, keys in messages for m in {m for m, _ in keys} if g not in allowed.get(m, ()))
    assert sorted((g, m) for m, g, *_ in _rows(url, LETTERS)) == refused


def test_a_moved_meter_s_old_gateway_still_delivers_what_it_measured_before_the_move(migrated_database_url):
    """A move refused everything the old gateway still held in its spool, measured before the move
    (README told operators to --add first and move once the spool was empty): now its readings and
    events measured before the move are stored as they arrive within the handover (35 days), and
    those measured after it are dead letters saying since when; assigned again, it is current again."""
    url = migrated_database_url
    now = datetime.now(UTC)
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    before, after = iso(now - timedelta(hours=2)), iso(now + timedelta(minutes=1))
    store = ReadingStore(url)
    try:
        _write(store, "gw-a", 1, [("WM-H", iso(now - timedelta(hours=3)), 10.0)])
        moved = _assign(url, "WM-H", "--gateway", "gw-b")
        assert moved["meters"] == {"WM-H": ["gw-b"]} and list(moved["moved_from"]["WM-H"]) == ["gw-a"]
        _write(store, "gw-a", 2, [("WM-H", before, 10.1), ("WM-H", after, 10.3)])  # its spool, drained late
        for ts in (before, after):
            event = {"gateway_id": "gw-a", "event": "meter_offline", "ts": ts, "meter_id": "WM-H", "bus": "b"}
            payload = json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode()
            rows = parse_events_message(events_topic("gw-a"), payload, now)
            assert isinstance(rows, list)
            store.write([], (), rows)
        _write(store, "gw-b", 1, [("WM-H", iso(now - timedelta(hours=1)), 10.2)])
    finally:
        store.close()
    assert [(v, g) for _, v, g in _readings(url, "WM-H")] == [
        (Decimal("10.0"), "gw-a"),
        (Decimal("10.1"), "gw-a"),
        (Decimal("10.2"), "gw-b"),
    ]
    assert _rows(url, "SELECT gateway_id FROM events WHERE meter_id = 'WM-H'") == [("gw-a",)]  # the one before
    letters = _rows(url, LETTERS)
    assert [(m, g, t.rsplit("/", 1)[1]) for m, g, _, t in letters] == [
        ("WM-H", "gw-a", "reads"),
        ("WM-H", "gw-a", "events"),
    ]
    assert all(r.startswith("meter WM-H is assigned to gateway gw-b, not gw-a (since ") for _, _, r, _ in letters)
    again = _assign(url, "WM-H", "--gateway", "gw-a", "--add", "--replay")  # assigned again: current again
    assert again["meters"] == {"WM-H": ["gw-a", "gw-b"]} and again["moved_from"] == {}
    assert again["replayed"]["readings_stored"] == 1 and again["replayed"]["events_stored"] == 1


def test_the_handover_ends_35_days_after_the_move(migrated_database_url):
    url = migrated_database_url
    now = datetime.now(UTC)
    store = ReadingStore(url)
    try:
        _write(store, "gw-a", 1, [("WM-X", T0, 10.0)])
        _assign(url, "WM-X", "--gateway", "gw-b")
        with psycopg.connect(url) as conn:
            conn.execute(
                "UPDATE meter_gateways SET until = %s WHERE gateway_id = 'gw-a'", (now - timedelta(days=35, minutes=1),)
            )
        _write(store, "gw-a", 2, [("WM-X", T1, 10.5)])  # measured before the move, but 35 days late
    finally:
        store.close()
    assert [g for *_, g in _readings(url, "WM-X")] == ["gw-a"]
    assert [(m, g) for m, g, *_ in _rows(url, LETTERS)] == [("WM-X", "gw-a")]


def test_a_replay_stores_the_letters_of_the_meter_s_gateways_now_not_of_those_it_moved_away_from(
    migrated_database_url,
):
    """A meter moved by mistake and moved back, with dead letters from both gateways. The replay of
    the move back stores the letters of the gateway the meter has now (what it measured while the
    mistake stood) and leaves those of the gateway it moved away from as they are: its reading of
    before the mistake, refused then since the meter was not its (before, stored: 9999 m3 in the
    meter's readings), and what it measured after the move back (before, replayed again, refused
    again and written anew: counted as "refused_again", the meter not having moved)."""
    url = migrated_database_url
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    letters = "SELECT id, gateway_id FROM dead_letters WHERE meter_id = 'WM-R' ORDER BY id"
    store = ReadingStore(url)
    try:
        _write(store, "gw-a", 1, [("WM-R", T0, 10.0)])  # first heard: gw-a's
        _write(store, "gw-b", 1, [("WM-R", T1, 9999.0)])  # not its gateway: a dead letter
        _assign(url, "WM-R", "--gateway", "gw-b")  # a mistaken move (a mistyped meter id)
        after_mistake = iso(datetime.now(UTC) + timedelta(minutes=1))
        _write(store, "gw-a", 2, [("WM-R", after_mistake, 10.3)])  # measured after it: a dead letter
        assert [g for _, g in _rows(url, letters)] == ["gw-b", "gw-a"]
        corrected = _assign(url, "WM-R", "--gateway", "gw-a", "--replay")  # moved back
        assert corrected["meters"] == {"WM-R": ["gw-a"]} and list(corrected["moved_from"]["WM-R"]) == ["gw-b"]
        assert (corrected["replayed"]["letters"], corrected["replayed"]["readings_stored"]) == (1, 1)
        after_correction = iso(datetime.now(UTC) + timedelta(minutes=2))
        _write(store, "gw-b", 2, [("WM-R", after_correction, 9999.5)])  # gw-b's after the move back
        kept = _rows(url, letters)
        assert [g for _, g in kept] == ["gw-b", "gw-b"]
        again = _assign(url, "WM-R", "--gateway", "gw-a", "--replay")["replayed"]
    finally:
        store.close()
    assert again == {"letters": 0, "readings_stored": 0, "events_stored": 0, "refused_again": 0, "kept": 0}
    assert _rows(url, letters) == kept  # left as they were, not written anew
    assert [(v, g) for _, v, g in _readings(url, "WM-R")] == [(Decimal("10.0"), "gw-a"), (Decimal("10.3"), "gw-a")]
