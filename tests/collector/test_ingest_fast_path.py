"""The collector's msgspec fast path agrees with the JSON Schema contract, and its COPY text is exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aquami.contracts.reads import reads_schema, reads_validator
from collector.batch_parser import (
    EXPLAIN_MAX_BYTES,
    EXPLAIN_MAX_ERRORS,
    READINGS_MAX,
    REASON_MAX_CHARS,
    ParsedMessage,
    RejectedMessage,
    parse_reads_message,
)
from collector.fast_reads import ReadsMessage, decode_reads
from collector.service import CollectorConfig
from collector.store import copy_text

SCHEMA = reads_validator()  # the contract's patterns read as ECMA-262 reads them

identifiers = st.one_of(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,10}\Z"), st.text(max_size=6))
timestamps = st.one_of(
    st.from_regex(
        r"\A20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,7})?(Z|\+00:00|\+01:00)?\Z"
    ),
    st.text(max_size=5),
)
numbers = st.one_of(st.floats(-10, 2e12, allow_nan=False), st.integers(-5, 10**13), st.text(max_size=3), st.none())
alarms = st.lists(st.sampled_from(["leak", "burst", "tamper", "dry", "fire"]), max_size=3)
sources = st.fixed_dictionaries(
    {"protocol": st.sampled_from(["mbus", "wmbus", "zigbee"])},
    optional={
        "bus": st.text(max_size=3),
        "address": st.one_of(st.integers(), st.text(max_size=3), st.booleans()),
        "extra": st.just(1),
    },
)
readings = st.fixed_dictionaries(
    {"meter_id": identifiers, "ts": timestamps, "volume_m3": numbers},
    optional={
        "flow_m3h": numbers,
        "reverse_volume_m3": numbers,
        "alarms": alarms,
        "source": sources,
        "colour": st.just("red"),
    },
)
messages = st.fixed_dictionaries(
    {
        "gateway_id": identifiers,
        "batch_seq": st.one_of(st.integers(-2, 10**6), st.booleans()),
        "sent_at": timestamps,
        "readings": st.lists(readings, max_size=3),
    },
    optional={"note": st.just("x")},
)

# Messages the contract (aquami/contracts/reads.schema.json) accepts, every field drawn over its whole
# range: ``messages`` above is mostly invalid (almost never a whole valid message), so a property of
# what is accepted needs these.
valid_identifiers = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z", fullmatch=True)
valid_timestamps = st.builds(
    lambda moment, fraction, zone: moment.isoformat(timespec="seconds") + fraction + zone,
    # the contract takes any year; the collector a reading from 2000 to a day after it arrives
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2025, 12, 31)),
    st.one_of(st.just(""), st.from_regex(r"\A\.[0-9]{1,6}\Z", fullmatch=True)),
    st.sampled_from(["Z", "+00:00"]),
)
registers = st.one_of(st.floats(0, 1e12), st.integers(0, 10**12))
flows = st.one_of(st.floats(-1e6, 1e6), st.integers(-(10**6), 10**6))
any_text = st.text(st.characters(exclude_categories=["Cs"]))  # any JSON string (no lone surrogates)
valid_alarms = st.lists(
    st.sampled_from(["leak", "burst", "tamper", "reverse_flow", "dry", "low_battery", "meter_error"]), unique=True
)
valid_sources = st.fixed_dictionaries(
    {"protocol": st.sampled_from(["modbus-tcp", "modbus-rtu", "mbus", "wmbus", "pulse"])},
    optional={
        "bus": st.text(st.characters(exclude_categories=["Cs"]), max_size=128),
        "address": st.integers() | any_text,
    },
)
valid_readings = st.fixed_dictionaries(
    {"meter_id": valid_identifiers, "ts": valid_timestamps, "volume_m3": registers},
    optional={"flow_m3h": flows, "reverse_volume_m3": registers, "alarms": valid_alarms, "source": valid_sources},
)
valid_messages = st.fixed_dictionaries(
    {
        "gateway_id": valid_identifiers,
        "batch_seq": st.integers(0, 2**63 - 1),
        "sent_at": valid_timestamps,
        "readings": st.lists(valid_readings, min_size=1, max_size=5),
    }
)


@settings(max_examples=600)
@given(messages)
def test_the_fast_path_accepts_exactly_what_the_schema_accepts(message: dict[str, Any]):
    fast = decode_reads(json.dumps(message).encode())
    assert isinstance(fast, ReadsMessage) == SCHEMA.is_valid(message), (fast, message)


def test_the_fast_path_is_stricter_only_where_it_says_so():
    """A trailing newline is refused by both (ECMA-262's "$"; before, the schema's validator read it
    with Python's re, which took "gw\\n"); NaN by the fast path only."""
    trailing_newline: dict[str, Any] = {
        "gateway_id": "gw\n",
        "batch_seq": 1,
        "sent_at": "2026-01-01T00:00:00Z",
        "readings": [{"meter_id": "M1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1}],
    }
    assert not SCHEMA.is_valid(trailing_newline)
    assert isinstance(decode_reads(json.dumps(trailing_newline).encode()), str)
    result = parse_reads_message("aquami/v1/gw\n/reads", json.dumps(trailing_newline).encode())
    assert isinstance(result, RejectedMessage) and "gateway_id" in result.reason
    nan = (
        b'{"gateway_id":"gw","batch_seq":1,"sent_at":"2026-01-01T00:00:00Z",'
        b'"readings":[{"meter_id":"M1","ts":"2026-01-01T00:00:00Z","volume_m3":NaN}]}'
    )
    assert isinstance(parse_reads_message("aquami/v1/gw/reads", nan), RejectedMessage)


@pytest.mark.parametrize("zero", ["\u0660", "\u0966", "\uff10"])  # Arabic-Indic, Devanagari, fullwidth
def test_a_time_in_digits_of_another_script_is_refused_by_both(zero: str):
    """Python's \\d takes any script's digits, ECMA-262's (the schema's) ASCII's only; the fast path
    took "٢٠٢٦-01-01T00:00:00Z" where the schema refuses it."""
    other = "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in "2026-01-01T00:00:00Z")
    for field in ("sent_at", "ts"):
        message: dict[str, Any] = {"gateway_id": "gw", "batch_seq": 1, "sent_at": "2026-01-01T00:00:00Z"}
        message["readings"] = [{"meter_id": "M1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1}]
        assert SCHEMA.is_valid(message) and isinstance(decode_reads(json.dumps(message).encode()), ReadsMessage)
        if field == "ts":
            message["readings"][0]["ts"] = other
        else:
            message["sent_at"] = other
        assert not SCHEMA.is_valid(message)
        assert isinstance(decode_reads(json.dumps(message).encode()), str), field


def test_copy_text_carries_every_value_exactly():
    payload = {
        "gateway_id": "gw-1",
        "batch_seq": 3,
        "sent_at": "2026-01-01T00:00:00Z",
        "readings": [
            {
                "meter_id": "M:1.a_b-c",
                "ts": "2026-01-01T00:00:00.123456+00:00",
                "volume_m3": 0.1,
                "flow_m3h": -1e-7,
                "reverse_volume_m3": 12,
                "alarms": ["leak", "reverse_flow"],
            },
            {"meter_id": "M2", "ts": "2026-01-01T00:00:00Z", "volume_m3": 123456789012.5},
        ],
    }
    parsed = parse_reads_message("aquami/v1/gw-1/reads", json.dumps(payload).encode())
    assert isinstance(parsed, ParsedMessage)
    assert copy_text(parsed.rows).decode().split("\n") == [
        "M:1.a_b-c\t2026-01-01T00:00:00.123456+00:00\t0.1\t-1e-07\t12.0\t{leak,reverse_flow}\tgw-1\t3",
        "M2\t2026-01-01T00:00:00Z\t123456789012.5\t\\N\t\\N\t{}\tgw-1\t3",
        "",
    ]


def test_a_shared_group_shares_both_topics_and_every_collector_hears_the_gateways_status():
    statuses = ["aquami/v1/+/status", "aquami/v1/+/status/health"]  # retained: a shared subscription gets none
    config = CollectorConfig("postgresql://x", None, shared_group="collectors")  # type: ignore[arg-type]
    shared = ["$share/collectors/aquami/v1/+/reads", "$share/collectors/aquami/v1/+/events"]
    assert config.subscriptions == [*shared, *statuses]
    alone = CollectorConfig("postgresql://x", None).subscriptions  # type: ignore[arg-type]
    assert alone == ["aquami/v1/+/reads", "aquami/v1/+/events", *statuses]


@settings(max_examples=300)
@given(messages)
def test_the_copy_text_built_on_receipt_is_the_rows_copy_text(message: dict[str, Any]):
    parsed = parse_reads_message(f"aquami/v1/{message['gateway_id']}/reads", json.dumps(message).encode())
    if isinstance(parsed, ParsedMessage):
        assert parsed.copy_data == copy_text(parsed.rows)
        assert parsed.count == len(message["readings"])
        assert parsed.meter_ids == {r["meter_id"] for r in message["readings"]}


@settings(max_examples=300)
@given(valid_messages)
def test_a_valid_message_is_parsed_and_its_copy_text_holds_every_value(message: dict[str, Any]):
    assert SCHEMA.is_valid(message), message  # the strategy builds only what the contract accepts
    parsed = parse_reads_message(f"aquami/v1/{message['gateway_id']}/reads", json.dumps(message).encode())
    assert isinstance(parsed, ParsedMessage), parsed
    assert parsed.copy_data == copy_text(parsed.rows)
    assert parsed.count == len(message["readings"])
    assert parsed.meter_ids == {r["meter_id"] for r in message["readings"]}
    assert parsed.oldest_ts == min(r["ts"][:19] for r in message["readings"])
    null = "\\N"

    def number(reading: dict[str, Any], name: str) -> str:  # a JSON number is a float's repr in COPY text
        return repr(float(reading[name])) if name in reading else null

    def fields(r: dict[str, Any]) -> list[str]:
        registers = [number(r, "volume_m3"), number(r, "flow_m3h"), number(r, "reverse_volume_m3")]
        return [r["meter_id"], r["ts"], *registers, "{" + ",".join(r.get("alarms", [])) + "}"]

    tail = [message["gateway_id"], str(message["batch_seq"])]
    expected = ["\t".join([*fields(r), *tail]) for r in message["readings"]]
    assert parsed.copy_data.decode().split("\n") == [*expected, ""]


def test_identifiers_and_times_are_checked_once_each_but_refused_where_they_first_appear():
    def reading(meter_id: str, ts: str) -> dict[str, Any]:
        return {"meter_id": meter_id, "ts": ts, "volume_m3": 1.5}

    good = "2026-01-01T00:00:00Z"
    base = {"gateway_id": "gw-1", "batch_seq": 1, "sent_at": good}
    bad_id = dict(base, readings=[reading("M1", good), reading("M1", good), reading("M 2", good), reading("M 2", good)])
    assert decode_reads(json.dumps(bad_id).encode()) == (
        "Expected `str` matching regex '^[A-Za-z0-9][A-Za-z0-9._:-]*\\\\Z' - at `$.readings[2].meter_id`"
    )
    too_long = dict(base, readings=[reading("M1", good), reading("M" * 65, good)])
    assert decode_reads(json.dumps(too_long).encode()) == "Expected `str` of length <= 64 - at `$.readings[1].meter_id`"
    bad_ts = dict(base, readings=[reading("M1", good), reading("M2", "2026-01-01 00:00:00Z"), reading("M 3", good)])
    reason = decode_reads(json.dumps(bad_ts).encode())
    assert isinstance(reason, str) and reason.endswith("- at `$.readings[1].ts`")
    month_13 = dict(base, readings=[reading("M1", good), reading("M1", "2026-13-01T00:00:00Z")])
    result = parse_reads_message("aquami/v1/gw-1/reads", json.dumps(month_13).encode())
    assert result == RejectedMessage("readings/1/ts: '2026-13-01T00:00:00Z' is not a real UTC time")


def _too_many(count: int) -> bytes:
    readings = [{"meter_id": f"M{i}", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0} for i in range(count)]
    return json.dumps(
        {"gateway_id": "g", "batch_seq": 1, "sent_at": "2026-01-01T00:00:00Z", "readings": readings}
    ).encode()


def test_a_refusal_s_reason_is_short_though_the_validator_repeats_the_whole_list():
    """The validator's reason for 10,001 readings quoted all of them: 700 KB in a dead letter's
    reason, and in the log line."""
    refused = parse_reads_message("aquami/v1/g/reads", _too_many(10_001))
    assert refused == RejectedMessage("readings: 10001 items, more than the contract's 10000")


def _empty_readings(count: int) -> bytes:
    head = '{"gateway_id":"gw","batch_seq":1,"sent_at":"2026-03-02T00:00:00Z","readings":['
    return (head + ",".join(["{}"] * count) + "]}").encode()


def test_more_readings_than_the_contract_allows_are_refused_by_their_count_not_validated_one_by_one(monkeypatch):
    """600,000 ``{}`` as readings (1.8 MB, under EXPLAIN_MAX_BYTES) took 75 s to explain, reading by
    reading: the broker dropped the collector past its keepalive and sent the message again, for good.
    Now the count refuses it: the JSON Schema validator is never asked (a wall-clock limit here
    failed on a loaded machine)."""
    assert reads_schema()["properties"]["readings"]["maxItems"] == READINGS_MAX

    def validator_called(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("the validator explained a message with more readings than the contract allows")

    monkeypatch.setattr("collector.batch_parser.schema_errors", validator_called)
    refused = parse_reads_message("aquami/v1/gw/reads", _empty_readings(600_000))
    assert refused == RejectedMessage("readings: 600000 items, more than the contract's 10000")


@given(st.integers(min_value=EXPLAIN_MAX_ERRORS // 3 + 1, max_value=READINGS_MAX))
@settings(max_examples=15, deadline=None)
def test_an_explanation_stops_after_its_first_errors(count: int):
    """Each ``{}`` breaks the contract three times: the reason names the first EXPLAIN_MAX_ERRORS."""
    refused = parse_reads_message("aquami/v1/gw/reads", _empty_readings(count))
    assert isinstance(refused, RejectedMessage)
    errors = refused.reason.split("; ")
    assert errors[0] == "readings/0: 'meter_id' is a required property"
    assert errors[-1] == "and more" and len(errors) == EXPLAIN_MAX_ERRORS + 1


def test_a_message_larger_than_any_valid_one_is_refused_without_the_validator(monkeypatch):
    """Explaining a 68 MB message with the JSON Schema validator took about a minute on the thread
    that receives messages: the broker dropped the collector past its keepalive, sent the message
    again, and so on. Past EXPLAIN_MAX_BYTES the fast path's own reason is given."""

    def validator_called(*args: object) -> list[str]:
        raise AssertionError("the validator explained a message larger than any valid one")

    monkeypatch.setattr("collector.batch_parser.schema_errors", validator_called)
    payload = _too_many(70_000)
    assert len(payload) > EXPLAIN_MAX_BYTES
    refused = parse_reads_message("aquami/v1/g/reads", payload)
    assert isinstance(refused, RejectedMessage)
    assert refused.reason.startswith(f"{len(payload)} bytes, more than a reads message holds: ")
    assert "10000" in refused.reason and len(refused.reason) <= 2 * REASON_MAX_CHARS


@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)),
    st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2039, 1, 1)),
)
@settings(max_examples=200, deadline=None)
def test_a_reading_dated_before_2000_or_over_a_day_after_it_arrived_is_a_dead_letter(ts: datetime, received: datetime):
    """9999-12-31 and 1900-01-01 were stored as actual readings. The message's other readings are kept."""
    ts_text = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    odd = {"meter_id": "ODD", "ts": ts_text, "volume_m3": 2.0}
    received_at = received.replace(tzinfo=UTC)
    message = {
        "gateway_id": "gw",
        "batch_seq": 1,
        "sent_at": "2026-03-02T00:00:00Z",
        "readings": [
            {"meter_id": "GOOD", "ts": received_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "volume_m3": 1.0},
            odd,
        ],
    }
    parsed = parse_reads_message("aquami/v1/gw/reads", json.dumps(message).encode(), received_at)
    assert isinstance(parsed, ParsedMessage)
    timely = datetime(2000, 1, 1) <= ts.replace(microsecond=0) <= (received + timedelta(days=1)).replace(microsecond=0)
    assert [r.meter_id for r in parsed.message.readings] == (["GOOD", "ODD"] if timely else ["GOOD"])
    if timely:
        assert parsed.untimely is None
    else:
        assert parsed.untimely is not None
        reason, payload = parsed.untimely
        assert reason.startswith(f"1 of 2 readings refused: readings/1/ts: {ts_text!r} is ")
        assert json.loads(payload)["readings"] == [odd]


def test_a_message_whose_every_reading_is_untimely_is_refused():
    message = json.dumps(
        {
            "gateway_id": "gw",
            "batch_seq": 1,
            "sent_at": "2026-03-02T00:00:00Z",
            "readings": [{"meter_id": "M", "ts": "9999-12-31T23:59:59Z", "volume_m3": 1.0}],
        }
    ).encode()
    refused = parse_reads_message("aquami/v1/gw/reads", message, datetime(2026, 3, 2, tzinfo=UTC))
    assert refused == RejectedMessage(
        "1 of 1 readings refused: readings/0/ts: '9999-12-31T23:59:59Z' is more than a day after the collector "
        "received it (2026-03-02T00:00:00Z)",
        readings=1,  # a valid message's reading, refused: counted as received (collector.service)
    )
