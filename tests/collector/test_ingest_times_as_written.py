"""Gateways' times that Python's ``fromisoformat`` would read as another time are refused.

``fromisoformat`` (3.11+) reads ``12.5`` as half a second past 12:00 (ISO 8601's 12:30),
``12:00.5`` likewise, ``12:00:00.`` as 12:00, and takes any character between date and time. The
reads and events contracts' pattern (``T``, and any fraction on the seconds only) already keeps
them out: these tests hold the collector to it, through the parsers and a real broker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.events import events_topic
from collector.batch_parser import ParsedMessage, RejectedMessage, parse_reads_message
from collector.events_parser import parse_events_message
from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for

RECEIVED = datetime(2026, 12, 6, tzinfo=UTC)

moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 12, 5)).map(
    lambda t: t.replace(microsecond=0, tzinfo=UTC)
)
fraction = st.text("0123456789", min_size=1, max_size=6)
separator = st.characters(exclude_categories=["Cs"]).filter(lambda c: c != "T")


@st.composite
def misread(draw: st.DrawFn) -> tuple[str, str]:
    """A time as the contract writes it, and the same time written so ``fromisoformat`` misreads it."""
    t = draw(moments)
    date, hh, mm, ss = f"{t:%Y-%m-%d}", f"{t:%H}", f"{t:%M}", f"{t:%S}"
    written = draw(
        st.sampled_from(
            [
                f"{date}{draw(separator)}{hh}:{mm}:{ss}Z",
                f"{date}T{hh}.{draw(fraction)}Z",
                f"{date}T{hh}:{mm}.{draw(fraction)}Z",
                f"{date}T{hh}:{mm}:{ss}.Z",
            ]
        )
    )
    return f"{date}T{hh}:{mm}:{ss}Z", written


def _batch(*stamps: str) -> bytes:
    return reads("gw", 1, [("M1", ts, 1.5) for ts in stamps])


def _event(ts: str, last_good: str | None = None) -> bytes:
    fields = {"gateway_id": "gw", "event": "meter_offline", "meter_id": "M1", "bus": "b", "consecutive_failures": 3}
    return json.dumps(fields | {"ts": ts, "last_good": last_good}).encode()


@given(misread())
def test_a_reading_or_event_dated_so_fromisoformat_misreads_it_is_refused_naming_it(times: tuple[str, str]) -> None:
    good, written = times
    taken = parse_reads_message("aquami/v1/gw/reads", _batch(good), RECEIVED)
    assert isinstance(taken, ParsedMessage) and [r.ts for r in taken.message.readings] == [good]
    refused = parse_reads_message("aquami/v1/gw/reads", _batch(good, written), RECEIVED)
    assert isinstance(refused, RejectedMessage) and refused.reason.startswith(f"readings/1/ts: {written!r}"), refused
    assert not isinstance(parse_events_message("aquami/v1/gw/events", _event(good), RECEIVED), RejectedMessage)
    for event, field in ((_event(written), "ts"), (_event(good, last_good=written), "last_good")):
        event_refused = parse_events_message("aquami/v1/gw/events", event, RECEIVED)
        assert isinstance(event_refused, RejectedMessage), event_refused
        assert f"{field}: {written!r}" in event_refused.reason, event_refused


def test_a_gateway_s_reading_at_12_5_is_a_dead_letter_not_a_reading_at_half_a_second_past_12(
    migrated_database_url: str, mosquitto
) -> None:
    url, gw = migrated_database_url, "gw-times"
    day = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    written = [f"{day}T12.5Z", f"{day}x12:00:00Z", f"{day}T12:00.5Z", f"{day}T12:00:00.Z"]
    with running_collector(url, mosquitto.url), publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        for seq, ts in enumerate(written, start=1):
            publish(f"aquami/v1/{gw}/reads", reads(gw, seq, [("MT1", ts, 2.5)]))
            event = {"gateway_id": gw, "event": "meter_offline", "meter_id": "MT1", "bus": "b", "ts": ts}
            publish(events_topic(gw), json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode())
        publish(f"aquami/v1/{gw}/reads", reads(gw, 9, [("MT1", f"{day}T13:00:00Z", 2.6)]))
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'MT1'") == 1, 20, "the good one")
        wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") == 2 * len(written), 20, "dead letters")
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT ts FROM readings WHERE meter_id = 'MT1'").fetchall()
        events = conn.execute("SELECT count(*) FROM events WHERE meter_id = 'MT1'").fetchone()
        reasons = [r for (r,) in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
    assert stored == [(datetime.fromisoformat(f"{day}T13:00:00Z"),)] and events == (0,)
    for ts in written:
        assert any(r.startswith(f"readings/0/ts: {ts!r} does not match") for r in reasons), (ts, reasons)
        assert any(r.startswith(f"ts: {ts!r} does not match") for r in reasons), (ts, reasons)
