"""Replaying batches in any order, with duplicates, gives the same table; conflicts are kept, not lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.batch_parser import ParsedMessage, parse_reads_message
from collector.store import ReadingStore
from collector.vee.editing import edit_reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _batch(seq: int, readings: list[dict]) -> bytes:
    return json.dumps(
        {"gateway_id": "gw-1", "batch_seq": seq, "sent_at": "2026-03-02T00:00:00Z", "readings": readings}
    ).encode()


def _reading(meter: int, hour: int, volume: str, flow: float | None = None) -> dict:
    r: dict = {
        "meter_id": f"M{meter}",
        "ts": (T0 + timedelta(hours=hour)).isoformat().replace("+00:00", "Z"),
        "volume_m3": json.loads(volume),
    }
    if flow is not None:
        r["flow_m3h"] = flow
    return r


def _store(store: ReadingStore, payloads: list[bytes]) -> None:
    for payload in payloads:
        parsed = parse_reads_message("aquami/v1/gw-1/reads", payload)
        assert isinstance(parsed, ParsedMessage)
        store.write(parsed.rows)


def _content(url: str) -> tuple[list[tuple], list[tuple], list[str]]:
    with psycopg.connect(url) as conn:
        readings = conn.execute(
            "SELECT meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality FROM readings ORDER BY 1, 2"
        ).fetchall()
        conflicts = conn.execute(
            "SELECT meter_id, ts, volume_m3, flow_m3h FROM reading_conflicts ORDER BY 1, 2, 3"
        ).fetchall()
        meters = [r[0] for r in conn.execute("SELECT meter_id FROM meters WHERE NOT registered ORDER BY 1")]
    return readings, conflicts, meters


def _truncate(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE readings, meters, reading_conflicts, reading_history, dead_letters CASCADE")


# Twelve batches over three meters; batches overlap, so most readings arrive two or three times.
READINGS = [_reading(m, h, f"{100 * m + h * 0.125}", flow=round(0.1 * h, 3)) for m in (1, 2, 3) for h in range(24)]
BATCHES = [_batch(i, READINGS[i * 6 : i * 6 + 12]) for i in range(12)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(BATCHES))), repeats=st.lists(st.integers(0, len(BATCHES) - 1), max_size=8))
def test_any_order_with_redeliveries_gives_the_same_table(migrated_database_url, order, repeats):
    url = migrated_database_url
    _truncate(url)
    store = ReadingStore(url)
    try:
        _store(store, [BATCHES[i] for i in order] + [BATCHES[i] for i in repeats])
    finally:
        store.close()
    readings, conflicts, meters = _content(url)
    assert len(readings) == len(READINGS) == 72
    expected = sorted((r["meter_id"], r["ts"], r["volume_m3"]) for r in READINGS)
    got = sorted((m, ts.isoformat().replace("+00:00", "Z"), float(v)) for m, ts, v, *_ in readings)
    assert got == expected
    assert all(row[6] == "actual" for row in readings)
    assert conflicts == []  # redeliveries are exact repeats, not conflicts
    assert meters == ["M1", "M2", "M3"]  # unknown meters are recorded, not rejected


CONFLICTING = [
    _batch(1, [_reading(1, 0, "10.5"), _reading(1, 1, "11")]),
    _batch(2, [_reading(1, 1, "11.25")]),  # same key as (M1, hour 1), different register
    _batch(3, [_reading(1, 1, "11", flow=0.5)]),  # same key and register, but now a flow: also different
]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(CONFLICTING))), replay=st.booleans())
def test_conflicting_duplicates_are_kept_for_vee_and_every_value_survives(migrated_database_url, order, replay):
    url = migrated_database_url
    _truncate(url)
    store = ReadingStore(url)
    try:
        payloads = [CONFLICTING[i] for i in order]
        _store(store, payloads + (payloads if replay else []))
    finally:
        store.close()
    readings, conflicts, _ = _content(url)
    assert len(readings) == 2
    assert len(conflicts) == 2  # the stored one plus two others: three versions of one key
    versions = {(r[2], r[3]) for r in readings if r[1] == T0 + timedelta(hours=1)} | {(c[2], c[3]) for c in conflicts}
    assert versions == {(Decimal("11"), None), (Decimal("11.25"), None), (Decimal("11"), 0.5)}


def test_an_actual_reading_replaces_an_estimate_and_the_estimate_is_kept_in_history(migrated_database_url):
    url = migrated_database_url
    ts = T0 + timedelta(hours=5)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES ('M1')")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
            "VALUES ('M1', %s, 12.5, 'estimated', 'vee:linear', 'gap')",
            (ts,),
        )
    store = ReadingStore(url)
    try:
        result = store.write(parse_reads_message("aquami/v1/gw-1/reads", _batch(9, [_reading(1, 5, "12.75")])).rows)  # type: ignore[union-attr]
    finally:
        store.close()
    assert result.inserted == 1 and result.conflicts == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT volume_m3, quality FROM readings").fetchall() == [(Decimal("12.75"), "actual")]
        assert conn.execute("SELECT volume_m3, quality, superseded_quality FROM reading_history").fetchall() == [
            (Decimal("12.5"), "estimated", "actual")
        ]


def test_a_redelivered_reading_leaves_a_person_s_edit_as_it_was(migrated_database_url):
    """QoS 1 brings the same message again after a person corrected the reading it carried: the edit
    stands (value, quality, who and why); the redelivery is no conflict either, it is what arrived."""
    url = migrated_database_url
    ts = T0 + timedelta(hours=5)
    message = _batch(9, [_reading(1, 5, "12.75", flow=0.25)])
    store = ReadingStore(url)
    try:
        _store(store, [message])
        with psycopg.connect(url) as conn:
            edit_reading(conn, "M1", ts, Decimal("12.575"), by="a.jones", reason="digits transposed")
            conn.commit()
        _store(store, [message])  # the same message again
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        columns = "volume_m3, flow_m3h, quality, quality_by, quality_reason"
        stored = conn.execute(f"SELECT {columns} FROM readings").fetchall()
        history = conn.execute("SELECT volume_m3, quality FROM reading_history").fetchall()
        conflicts = conn.execute("SELECT count(*) FROM reading_conflicts").fetchone()
    assert stored == [(Decimal("12.575"), 0.25, "edited", "a.jones", "digits transposed")]
    assert history == [(Decimal("12.75"), "actual")]
    assert conflicts == (0,)
