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
    logged_telegram,
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


@given(st.lists(received, max_size=5), st.booleans(), st.data())
def test_stream_round_trip_in_any_chunks(messages: list, crc: bool, data: st.DataObject) -> None:
    """A module attaches the FCS to every message or to none; without it, the last message is
    taken once the line goes quiet (nothing says it is whole before)."""
    stream = b"".join(build_indication(m.telegram, rssi=m.rssi, timestamp=m.timestamp, crc=crc) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = ReceiverStreamParser()
    out: list[ReceivedTelegram] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += parser.feed(stream[start:end])
    out += parser.resync()
    assert out == messages
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


def _drain(parser: ReceiverStreamParser) -> list[ReceivedTelegram]:
    """What the parser gives once the line stays quiet (the gateway calls resync() every read timeout)."""
    out: list[ReceivedTelegram] = []
    while parser.waiting:
        out += parser.resync()
    return out


indications = st.builds(
    ReceivedTelegram,
    telegram=st.binary(min_size=11, max_size=120).map(lambda body: bytes([len(body)]) + body),
    rssi=st.integers(0, 255),
    timestamp=st.integers(0, 2**32 - 1),
)
# line noise, rich in what looks like the start of a message without FCS (A5, control 02/22/42/62, id 03)
noise = st.lists(
    st.one_of(st.binary(max_size=12), st.sampled_from([b"\xa5\x02\x03", b"\xa5\x22\x03", b"\xa5\x62\x03"])), max_size=4
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(noise, indications), min_size=1, max_size=6), noise, st.booleans())
def test_good_messages_after_noise_are_all_delivered(chunks: list, trailing: bytes, require_fcs: bool) -> None:
    """The gateway's default (require_fcs = false) on a module attaching the FCS: noise that looked
    like the header of a message without FCS swallowed the good messages after it (four bytes lost
    seven telegrams). Noise anywhere between good messages now costs only the noise."""
    parser = ReceiverStreamParser(require_fcs=require_fcs)
    out: list[ReceivedTelegram] = []
    for garbage, message in chunks:
        out += parser.feed(garbage)
        out += parser.feed(build_indication(message.telegram, rssi=message.rssi, timestamp=message.timestamp))
    out += parser.feed(trailing)
    out += _drain(parser)
    sent = [message for _, message in chunks]
    assert [m for m in out if m in sent] == sent


def test_noise_shaped_like_a_message_without_fcs_is_noise_once_fcs_was_seen() -> None:
    """A module attaches the FCS to every message or to none: once one came with it, a candidate
    without FCS is noise, even one that is whole and followed by a start byte."""
    good = [build_indication(bytes([26]) + bytes([n]) * 26, rssi=0x40, timestamp=n) for n in range(10)]
    fake = bytes.fromhex("A5020302EEEE")  # a whole 6-byte message without FCS, its payload EE EE
    first = ReceiverStreamParser().feed(fake + good[0])  # no FCS seen yet: it could be a message
    assert [r.telegram[:3] for r in first] == [bytes([2, 0xEE, 0xEE]), bytes([26, 0, 0])]
    out = ReceiverStreamParser().feed(good[0] + fake + b"".join(good[1:]))
    assert [r.telegram[1] for r in out] == list(range(10))
    # A5 22 03 FF announces 263 bytes without FCS: a start byte follows 4 + 7 * 37 bytes later
    assert len(good[0]) == 37
    out = ReceiverStreamParser().feed(good[0] + bytes.fromhex("A52203FF") + b"".join(good[1:]))
    assert [r.telegram[1] for r in out] == list(range(10))


def test_one_garbled_length_byte_loses_one_message_without_fcs() -> None:
    """A module that attaches no FCS: one garbled length byte (FF) in message 0 made the parser take
    263 bytes as one message, losing the next seven telegrams. A candidate without FCS whose next
    byte is no start byte is noise now: message 0 is lost, the others come, the last once the line
    is quiet."""
    stream = [
        bytearray(build_indication(bytes([28]) + bytes([n]) * 28, rssi=0x40, timestamp=n, crc=False)) for n in range(10)
    ]
    stream[0][3] = 0xFF
    parser = ReceiverStreamParser()
    out: list[ReceivedTelegram] = []
    for message in stream:
        out += parser.feed(bytes(message))
    assert [r.telegram[1] for r in out] == list(range(1, 9))
    assert [r.telegram[1] for r in _drain(parser)] == [9]


@given(received, st.booleans())
def test_a_logged_telegram_is_the_telegram_the_receiver_passed_on(message: ReceivedTelegram, crc: bool) -> None:
    """Bytes copied from an iM871A's log, its whole message or its payload (the telegram from the
    C-field on), give the telegram back with its L-field; a payload starting A5 (no EN 13757-4 C-field)
    is read as a whole message."""
    telegram = message.telegram
    whole = build_indication(telegram, rssi=message.rssi, timestamp=message.timestamp, crc=crc)
    assert logged_telegram(whole) == telegram
    if telegram[1] != 0xA5:
        assert logged_telegram(telegram[1:]) == telegram


def _logged_or_decode_error(data: bytes) -> None:
    try:
        telegram = logged_telegram(data)
    except DecodeError:
        return
    assert telegram[0] == len(telegram) - 1 and telegram[1:] in data


@pytest.mark.timeout(120)  # a hang guard for all the examples, not a speed test
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda rest: b"\xa5" + rest))
def test_fuzz_logged_telegram(data: bytes) -> None:
    _logged_or_decode_error(data)


@pytest.mark.timeout(120)
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CAPTURED), st.lists(st.tuples(st.integers(0, 100), st.integers(0, 255)), max_size=4))
def test_fuzz_logged_telegram_mutated(hex_message: str, edits: list[tuple[int, int]]) -> None:
    data = bytearray.fromhex(hex_message)
    for position, value in edits:
        if position < len(data):
            data[position] = value
    _logged_or_decode_error(bytes(data))
    _logged_or_decode_error(bytes(data[4:-2]))
