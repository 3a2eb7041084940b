"""Link layer: CRC-16 of EN 13757-4 and the CRC blocks of frame formats A and B."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.wmbus.crc import crc16_en13757
from firmware_protocols.wmbus.errors import CrcError, TruncatedTelegramError
from firmware_protocols.wmbus.link import (
    add_format_a,
    add_format_b,
    format_a_size,
    strip_format_a,
    strip_format_b,
    unframe,
)


def _bitwise_crc(data: bytes) -> int:
    """The textbook bit-at-a-time CRC, to check the table-driven one against."""
    crc = 0
    for byte in data:
        for bit in range(7, -1, -1):
            feedback = ((crc >> 15) & 1) ^ ((byte >> bit) & 1)
            crc = ((crc << 1) & 0xFFFF) ^ (0x3D65 if feedback else 0)
    return crc ^ 0xFFFF


def test_crc_check_value() -> None:
    # CRC-16/EN-13757 in the catalogue of parametrised CRC algorithms: check = 0xC2B7.
    assert crc16_en13757(b"123456789") == 0xC2B7


@given(st.binary(max_size=300))
def test_crc_table_matches_bitwise(data: bytes) -> None:
    assert crc16_en13757(data) == _bitwise_crc(data)


# A telegram without CRCs: L-field counting its own bytes, at least link header and CI.
telegrams = st.binary(min_size=10, max_size=245).map(lambda body: bytes([len(body)]) + body)


@given(telegrams)
def test_format_a_round_trip(frame: bytes) -> None:
    with_crcs = add_format_a(frame)
    assert len(with_crcs) == format_a_size(frame[0])
    assert strip_format_a(with_crcs) == frame
    assert unframe(with_crcs) == (frame, "A", True)


@given(st.binary(min_size=10, max_size=251).map(lambda body: bytes([len(body)]) + body))
def test_format_b_round_trip(frame: bytes) -> None:
    with_crcs = add_format_b(frame)
    assert with_crcs[0] == len(with_crcs) - 1  # format B's L-field counts the CRCs
    assert strip_format_b(with_crcs) == frame
    assert unframe(with_crcs, crcs=True, frame_format="B") == (frame, "B", True)


def test_format_a_block_layout() -> None:
    # L = 0x1E: 10 bytes in block 1, then 16 + 5 bytes: three CRCs, 37 bytes on air.
    frame = bytes([0x1E]) + bytes(range(1, 31))
    with_crcs = add_format_a(frame)
    assert len(with_crcs) == 31 + 6
    assert with_crcs[10:12] == crc16_en13757(frame[:10]).to_bytes(2, "big")
    assert with_crcs[28:30] == crc16_en13757(frame[10:26]).to_bytes(2, "big")


def test_format_b_long_telegram_has_two_crcs() -> None:
    frame = bytes([200]) + bytes(200)
    with_crcs = add_format_b(frame)
    assert len(with_crcs) == 205 and with_crcs[0] == 204
    assert with_crcs[126:128] == crc16_en13757(with_crcs[:126]).to_bytes(2, "big")


@given(telegrams, st.data())
def test_corrupted_format_a_block_is_named(frame: bytes, data: st.DataObject) -> None:
    with_crcs = bytearray(add_format_a(frame))
    position = data.draw(st.integers(1, len(with_crcs) - 1))
    with_crcs[position] ^= data.draw(st.integers(1, 255))
    # Block number of the corrupted byte: block 1 is bytes 0..11, then 18 bytes per block.
    block = 1 if position < 12 else 2 + (position - 12) // 18
    with pytest.raises(CrcError, match=f"block {block} of"):
        strip_format_a(bytes(with_crcs))


def test_unframe_rejects_a_length_mismatch() -> None:
    frame = bytes([0x20]) + bytes(20)
    with pytest.raises(TruncatedTelegramError, match="announces"):
        unframe(frame)


def test_unframe_without_crcs_keeps_the_frame() -> None:
    frame = bytes([10]) + bytes(range(10))
    assert unframe(frame, crcs=False) == (frame, None, False)


@given(st.binary(min_size=10, max_size=251).map(lambda body: bytes([len(body)]) + body), st.data())
def test_a_format_b_telegram_garbled_in_one_bit_is_a_crc_error(frame: bytes, data: st.DataObject) -> None:
    """Told nothing (``crcs=None``), a format B telegram whose CRC fails was taken for one whose CRCs
    a receiver had removed, its two CRC bytes read as data: one bit of noise in a volume (224 of
    8,192 single-bit errors in the review) gave a wrong reading. Its length fits format B with CRCs
    (EN 13757-4:2019 clause 12), so a failing CRC is a CRC error; CRC-16 finds every one-bit error."""
    with_crcs = bytearray(add_format_b(frame))
    position = data.draw(st.integers(1, len(with_crcs) - 1))  # not the L-field
    with_crcs[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CrcError, match="crcs=False"):
        unframe(bytes(with_crcs))
    # told that a receiver removed the CRCs, the same bytes are taken as they are
    assert unframe(frame, crcs=False) == (frame, None, False)


@pytest.mark.parametrize("size", [129, 130])
def test_a_length_that_fits_no_crc_layout_is_taken_without_crcs(size: int) -> None:
    """129 or 130 bytes with L + 1 = size: format B would need a third block of at least one byte
    after the second CRC, format A another length. Only a telegram without CRCs fits."""
    frame = bytes([size - 1]) + bytes(range(size - 1))
    assert unframe(frame) == (frame, None, False)
