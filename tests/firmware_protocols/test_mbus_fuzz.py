"""Fuzz: random and mutated frames never raise anything but DecodeError, and never hang.

Mutations keep the link layer valid where they aim at the application layer (the checksum is fixed
up afterwards), so the records parser sees them instead of the checksum check.

Hanging is caught by a timeout on each whole test (pytest-timeout), far beyond what its examples
take: how fast decoding is, is measured in benchmarks/bench_mbus_decode.py, not asserted here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import decode_frame, decode_master_frame
from firmware_protocols.mbus.frame import decode_frame_reference
from firmware_protocols.mbus.records import decode_records, decode_records_reference
from tests.firmware_protocols.test_mbus_corpus import TEST_FRAMES, frame_names, read_hex

CORPUS = [read_hex(TEST_FRAMES / f"{name}.hex") for name in frame_names(TEST_FRAMES)]
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(120)  # per test, all its examples: a hang guard, not a speed limit


def _outcome(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except DecodeError:
        return DecodeError


def _only_decode_errors(data: bytes) -> None:
    """Only DecodeError; and the fast path says what the reference path says."""
    fast, reference = _outcome(decode_frame, data), _outcome(decode_frame_reference, data)
    assert fast == reference
    _outcome(decode_master_frame, data)


def _relink(user: bytes, c_field: int = 0x08, address: int = 1) -> bytes:
    """A long frame with a correct L, checksum and stop byte around ``user`` (CI onwards)."""
    user = user[:253]
    body = bytes((c_field, address)) + user
    return bytes((0x68, len(body), len(body), 0x68)) + body + bytes((sum(body) & 0xFF, 0x16))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _only_decode_errors(data)


@FUZZ
@given(st.binary(max_size=260))
def test_random_records_behind_a_valid_header(records: bytes) -> None:
    _only_decode_errors(_relink(bytes.fromhex("72785634129315070700000000") + records))
    for decode in (decode_records, decode_records_reference):
        with contextlib.suppress(DecodeError):
            decode(records)


@FUZZ
@given(
    st.sampled_from(CORPUS),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 7)), min_size=1, max_size=8),
    st.booleans(),
)
def test_flipped_bits(frame: bytes, flips: list[tuple[int, int]], fix_checksum: bool) -> None:
    data = bytearray(frame)
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    _only_decode_errors(bytes(data))
    if fix_checksum:
        _only_decode_errors(_relink(bytes(data[6:-2]), data[4], data[5]))


@FUZZ
@given(st.sampled_from(CORPUS), st.integers(0, 300), st.booleans())
def test_truncated(frame: bytes, cut: int, fix_checksum: bool) -> None:
    cut %= len(frame)
    _only_decode_errors(frame[:cut])
    if fix_checksum and cut > 7:
        _only_decode_errors(_relink(frame[6:cut], frame[4], frame[5]))


@FUZZ
@given(st.sampled_from(CORPUS), st.integers(0, 255), st.sampled_from([1, 2, "both"]))
def test_wrong_length_fields(frame: bytes, length: int, which: int | str) -> None:
    data = bytearray(frame)
    if which in (1, "both"):
        data[1] = length
    if which in (2, "both"):
        data[2] = length
    _only_decode_errors(bytes(data))


@FUZZ
@given(
    st.sampled_from(CORPUS),
    st.integers(0, 200),
    st.integers(1, 40),
    st.sampled_from([0x8B, 0x80, 0xFF, 0x84, 0xFD, 0xFC]),
)
def test_long_extension_chains(frame: bytes, position: int, count: int, byte: int) -> None:
    """DIFE and VIFE chains past ten, inserted at any point of the records."""
    records = frame[19:-2]
    position %= len(records) + 1
    mutated = records[:position] + bytes((byte,)) * count + records[position:]
    _only_decode_errors(_relink(frame[6:19] + mutated, frame[4], frame[5]))


def test_the_chain_limits_hold() -> None:
    eleven_difes = b"\x8c" + b"\x80" * 10 + b"\x00\x13" + b"\x00" * 4
    for decode in (decode_records, decode_records_reference):
        try:
            decode(eleven_difes)
        except DecodeError as error:
            assert "more than ten" in str(error)
        else:
            raise AssertionError("eleven DIFEs decoded")
    ten_difes = b"\x8c" + b"\x80" * 9 + b"\x00\x13" + b"\x00" * 4
    records, _, _ = decode_records(ten_difes)
    assert len(records) == 1 and records[0].quantity == "volume"
