"""IMST iM871A serial framing: captured messages, build/parse round trips, resynchronisation, fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols.errors import DecodeError, KeyMissingError
from firmware_protocols.wmbus import build_telegram, decode_telegram
from firmware_protocols.wmbus.receiver import (
    DEVMGMT_ID,
    RADIOLINK_ID,
    RADIOLINK_MSG_WMBUSMSG_IND,
    ReceivedTelegram,
    ReceiverStreamParser,
    build_indication,
    build_message,
    crc16_x25,
    parse_message,
)

# Messages captured from an iM871A receiving Kamstrup C1 telegrams, with the FCS attached (control
# 0x82), as published in a public iM871A CRC-16 test ("Implementation of CRC16 for IM871-A (CCITT)",
# Steffen Breinbjerg and Janus, 2020).
CAPTURED = [
    "a5820327442d2c5768663230028d20cd12340720519df247ff65e751662a300bc4e5c67da86477f0182637c1ab",
    "a5820321442d2c952742761b168d206d82c40222942c7a5414f7be5ea4411ebab435fe4995ff91",
    "a582032d442d2c5768663230028d201c21e00920d1c1b4c7ae4e8ea21285041754ef54367a7a00d2af4d23384dc51872b5970c",
]


def test_fcs_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E  # CRC-16/IBM-SDLC (X.25) check value


@pytest.mark.parametrize("hex_message", CAPTURED)
def test_captured_messages(hex_message: str) -> None:
    message = bytes.fromhex(hex_message)
    parsed = parse_message(message)
    assert (parsed.fields.value.control.endpoint, parsed.fields.value.message_id) == (2, 3)
    [received] = ReceiverStreamParser().feed(message)
    telegram = received.telegram
    assert telegram[0] == len(telegram) - 1 == message[3]
    assert telegram[1:] == message[4:-2]
    # Kamstrup (2D2C) with an encrypted ELL: without a key the decoder names the meter.
    meter_id = telegram[4:8][::-1].hex()
    with pytest.raises(KeyMissingError, match=f"meter {meter_id}"):
        decode_telegram(telegram, {}, crcs=False)
    # and building the indication again gives the captured bytes
    assert build_indication(telegram) == message


def test_bad_fcs_is_dropped_and_the_next_message_still_read() -> None:
    first, second = (bytes.fromhex(m) for m in CAPTURED[:2])
    corrupted = first[:-1] + bytes([first[-1] ^ 0xFF])
    parser = ReceiverStreamParser()
    received = parser.feed(corrupted + second)
    assert [r.telegram[1:] for r in received] == [second[4:-2]]
    assert parser.fcs_errors >= 1


def test_other_messages_are_counted_not_returned() -> None:
    parser = ReceiverStreamParser()
    ping_response = build_message(DEVMGMT_ID, 0x02, b"")
    assert parser.feed(ping_response) == []
    assert parser.other_messages == 1


telegrams = st.binary(min_size=11, max_size=254).map(lambda body: bytes([len(body)]) + body)
received = st.builds(
    ReceivedTelegram,
    telegram=telegrams,
    rssi=st.none() | st.integers(0, 255),
    timestamp=st.none() | st.integers(0, 2**32 - 1),
)


@given(st.lists(st.tuples(received, st.booleans()), max_size=5), st.data())
def test_stream_round_trip_in_any_chunks(messages: list, data: st.DataObject) -> None:
    stream = b"".join(build_indication(m.telegram, rssi=m.rssi, timestamp=m.timestamp, crc=crc) for m, crc in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = ReceiverStreamParser()
    out: list[ReceivedTelegram] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += parser.feed(stream[start:end])
    assert out == [m for m, _ in messages]
    assert parser.discarded_bytes == 0


@given(st.lists(st.tuples(st.binary(max_size=40), received), min_size=1, max_size=4))
def test_resynchronises_after_garbage(chunks: list) -> None:
    """Garbage between messages (with the FCS required) never loses the messages after it."""
    parser = ReceiverStreamParser(require_fcs=True)
    out: list[ReceivedTelegram] = []
    for garbage, message in chunks:
        out += parser.feed(garbage)
        out += parser.feed(build_indication(message.telegram, rssi=message.rssi, timestamp=message.timestamp))
    # Trailing garbage may hold a partial message; one full message's worth of filler flushes it.
    out += parser.feed(b"\x00" * 300)
    for _, message in chunks:
        assert message in out


def test_build_indication_requires_a_telegram_without_crcs() -> None:
    with pytest.raises(ValueError, match="L-field"):
        build_indication(b"\x05\x44")


def test_simulator_path_builds_a_telegram_the_gateway_decodes() -> None:
    key = bytes(range(16))
    telegram = build_telegram(
        bytes.fromhex("0413D2040000"),
        manufacturer="ABC",
        id="13572468",
        version=1,
        medium="water",
        access_no=1,
        key=key,
        crcs=False,
    )
    [got] = ReceiverStreamParser().feed(build_indication(telegram, rssi=180))
    assert got.rssi == 180
    assert decode_telegram(got.telegram, {"13572468": key}, crcs=False)["records"][0]["value"] == 1.234


@pytest.mark.timeout(120)  # a hang guard for all the examples (they take about 1 s), not a speed test
@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_fuzz_random_stream(chunks: list[bytes]) -> None:
    parser = ReceiverStreamParser()
    for chunk in chunks:
        for item in parser.feed(chunk):
            assert item.telegram[0] == len(item.telegram) - 1


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CAPTURED), st.lists(st.tuples(st.integers(0, 100), st.integers(0, 255)), max_size=4))
def test_fuzz_mutated_messages(hex_message: str, edits: list) -> None:
    data = bytearray(bytes.fromhex(hex_message))
    for position, value in edits:
        data[position % len(data)] = value
    for item in ReceiverStreamParser().feed(bytes(data)):
        with contextlib.suppress(DecodeError):
            decode_telegram(item.telegram, {}, crcs=False)
    with contextlib.suppress(DecodeError):
        parse_message(bytes(data))


def test_messages_on_the_radio_endpoint_decode() -> None:
    message = build_message(RADIOLINK_ID, RADIOLINK_MSG_WMBUSMSG_IND, b"\x44" * 12, rssi=1, timestamp=2)
    parsed = parse_message(message)
    assert (parsed.fields.value.rssi, parsed.fields.value.timestamp) == (1, 2)
