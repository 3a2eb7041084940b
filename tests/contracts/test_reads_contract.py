"""The MQTT reads contract, from both sides: what the gateway builds, the collector accepts as is."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.reads import ALARMS, Reading, ReadsBatch, reads_topic, schema_errors, utc_iso
from collector.batch_parser import ParsedMessage, RejectedMessage, parse_reads_message

meter_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
volumes = st.decimals(min_value=0, max_value=10**9, places=3).map(float)
readings = st.builds(
    Reading,
    meter_id=meter_ids,
    ts=times,
    volume_m3=volumes,
    flow_m3h=st.none() | st.floats(min_value=-1000, max_value=1000, allow_nan=False),
    reverse_volume_m3=st.none() | volumes,
    alarms=st.lists(st.sampled_from(ALARMS), unique=True).map(tuple),
    protocol=st.sampled_from(["modbus-tcp", "modbus-rtu", "mbus", "wmbus", "pulse"]),
    bus=st.none() | st.text(max_size=20),
    address=st.none() | st.integers(0, 250),
)


@given(st.lists(readings, min_size=1, max_size=20), st.integers(0, 2**40))
def test_every_batch_the_gateway_builds_is_valid_and_parses_to_the_same_values(batch, seq):
    message = ReadsBatch("gw-1", seq, datetime.now(UTC), [r.to_json() for r in batch])
    assert schema_errors(json.loads(message.encode())) == []
    # received when the newest was read: the collector refuses readings dated well ahead of arrival
    received_at = max(r.ts for r in batch)
    parsed = parse_reads_message(reads_topic("gw-1"), message.encode(), received_at)
    assert isinstance(parsed, ParsedMessage)
    for reading, row in zip(batch, parsed.rows, strict=True):
        assert row[0] == reading.meter_id
        assert datetime.fromisoformat(row[1]) == reading.ts
        assert Decimal(row[2]) == Decimal(repr(reading.volume_m3))  # the exact decimal that was sent
        assert row[3] == reading.flow_m3h
        assert row[5] == list(reading.alarms)
        assert (row[6], row[7]) == ("gw-1", seq)


def _message(**overrides: object) -> dict:
    base = {
        "gateway_id": "gw-1",
        "batch_seq": 1,
        "sent_at": "2026-11-23T08:00:00Z",
        "readings": [{"meter_id": "M1", "ts": "2026-11-23T07:59:00Z", "volume_m3": 12.5}],
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"batch_seq": -1}, "batch_seq"),
        ({"batch_seq": 2**63}, "batch_seq"),  # the collector stores it as a bigint
        ({"readings": []}, "readings"),
        ({"readings": [{"meter_id": "M1", "ts": "2026-11-23T07:59:00", "volume_m3": 1}]}, "readings/0/ts"),
        ({"readings": [{"meter_id": "M1", "ts": "2026-11-23T07:59:00+02:00", "volume_m3": 1}]}, "readings/0/ts"),
        ({"readings": [{"meter_id": "M1", "ts": "2026-11-23T07:59:00Z", "volume_m3": -1}]}, "readings/0/volume_m3"),
        ({"readings": [{"meter_id": "M1", "ts": "2026-11-23T07:59:00Z", "volume_m3": "12"}]}, "readings/0/volume_m3"),
        (
            {"readings": [{"meter_id": "M1", "ts": "2026-11-23T07:59:00Z", "volume_m3": 1, "alarms": ["fire"]}]},
            "readings/0/alarms/0",
        ),
        ({"extra": 1}, "(root)"),
    ],
)
def test_the_collector_rejects_what_breaks_the_contract_and_says_where(change, complaint):
    result = parse_reads_message("aquami/v1/gw-1/reads", json.dumps(_message(**change)).encode())
    assert isinstance(result, RejectedMessage)
    assert complaint in result.reason


def test_an_impossible_date_that_matches_the_pattern_is_rejected():
    message = _message(readings=[{"meter_id": "M1", "ts": "2026-13-40T07:59:00Z", "volume_m3": 1}])
    result = parse_reads_message("aquami/v1/gw-1/reads", json.dumps(message).encode())
    assert isinstance(result, RejectedMessage)
    assert "not a real UTC time" in result.reason


@pytest.mark.parametrize("payload", [b"", b"{", b"\xff\xfe", b"[]", b"null", b'"reads"'])
def test_payloads_that_are_not_a_json_object_are_rejected(payload):
    assert isinstance(parse_reads_message("aquami/v1/gw-1/reads", payload), RejectedMessage)


def test_a_gateway_cannot_publish_under_another_gateways_topic():
    result = parse_reads_message("aquami/v1/gw-2/reads", json.dumps(_message()).encode())
    assert isinstance(result, RejectedMessage)
    assert "does not match the topic" in result.reason


@given(st.binary(max_size=300))
def test_any_bytes_give_rows_or_a_reason_never_an_exception(payload):
    result = parse_reads_message("aquami/v1/gw-1/reads", payload)
    assert isinstance(result, ParsedMessage | RejectedMessage)


def test_naive_and_non_utc_times_are_normalised_or_refused():
    with pytest.raises(ValueError, match="naive"):
        utc_iso(datetime(2026, 1, 1))
    cet = timezone(timedelta(hours=1))
    assert utc_iso(datetime(2026, 1, 1, 1, 0, tzinfo=cet)) == "2026-01-01T00:00:00Z"


def test_the_bounds_code_checks_beside_the_schema_are_the_schema_s():
    """The gateway, ``aquami detect`` and the collector's fast decoder check a reading's numbers
    against VOLUME_MAX_M3 and FLOW_MAX_M3H: those must be the schema file's own bounds."""
    from aquami.contracts.reads import FLOW_MAX_M3H, VOLUME_MAX_M3, reads_schema

    numbers = reads_schema()["$defs"]["reading"]["properties"]
    assert (numbers["volume_m3"]["minimum"], numbers["volume_m3"]["maximum"]) == (0, VOLUME_MAX_M3)
    assert (numbers["reverse_volume_m3"]["minimum"], numbers["reverse_volume_m3"]["maximum"]) == (0, VOLUME_MAX_M3)
    assert (numbers["flow_m3h"]["minimum"], numbers["flow_m3h"]["maximum"]) == (-FLOW_MAX_M3H, FLOW_MAX_M3H)


def test_the_identifier_code_checks_beside_the_schemas_is_theirs():
    """The gateway's configuration, the collector's fast decoder and register-meters check names
    with IDENTIFIER_PATTERN: it must be both schema files' own."""
    from aquami.contracts.events import events_schema
    from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN, is_identifier, reads_schema

    for schema in (reads_schema(), events_schema()):
        identifier = schema["$defs"]["identifier"]
        assert identifier["maxLength"] == IDENTIFIER_MAX_LENGTH and identifier["minLength"] == 1
        # JSON Schema's "$" is the end of the text; Python's needs "\\Z" not to take a final line break
        assert identifier["pattern"].removesuffix("$") == IDENTIFIER_PATTERN.removesuffix("\\Z")
    assert is_identifier("WM-00003") and is_identifier("a" * 64)
    assert not any(map(is_identifier, ("", "a" * 65, "WM-1\n", "-WM", "A?B", "WS/0001")))
