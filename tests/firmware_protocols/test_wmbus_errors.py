"""Bad input gives a clear DecodeError subclass saying what and where, never garbage records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.errors import DecodeError, KeyMissingError
from firmware_protocols.wmbus import (
    AuthenticationError,
    CrcError,
    TruncatedTelegramError,
    UnknownCiError,
    UnsupportedSecurityError,
    WrongKeyError,
    build_telegram,
    decode_telegram,
)
from firmware_protocols.wmbus.link import add_format_a, add_format_b

KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
RECORDS = bytes.fromhex("0413D20400000259C409")  # volume 1.234 m3, flow temperature 25.00 degC
METER = dict(manufacturer="ABC", id="87654321", version=3, medium="water", access_no=0x11)


def _telegram(**options: object) -> bytes:
    return build_telegram(RECORDS, **{**METER, **options})  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [5, 7])
def test_missing_key_names_the_meter(mode: int) -> None:
    data = _telegram(key=KEY, security_mode=mode)
    with pytest.raises(KeyMissingError, match="meter 87654321") as caught:
        decode_telegram(data, {"11111111": KEY})
    assert not isinstance(caught.value, WrongKeyError)


@pytest.mark.parametrize(
    "options", [dict(security_mode=5), dict(security_mode=7), dict(ell="aes_ctr", security_mode=0)]
)
@given(wrong=st.binary(min_size=16, max_size=16).filter(lambda k: k != KEY))
def test_wrong_key_names_the_meter(options: dict, wrong: bytes) -> None:
    data = _telegram(key=KEY, **options)
    with pytest.raises(WrongKeyError, match="meter 87654321"):
        decode_telegram(data, {"87654321": wrong})


def test_key_of_wrong_length() -> None:
    with pytest.raises(KeyMissingError, match="meter 87654321: key has 8 bytes"):
        decode_telegram(_telegram(key=KEY), {"87654321": KEY[:8]})


def test_long_header_key_is_looked_up_by_the_meter_not_the_link_address() -> None:
    data = _telegram(key=KEY, header="long")
    assert decode_telegram(data, {"87654321": KEY})["meter"]["id"] == "87654321"


def test_bad_crc_names_the_block() -> None:
    data = bytearray(_telegram(key=KEY))
    data[15] ^= 0x01  # inside block 2 (bytes 12..29)
    with pytest.raises(CrcError, match="block 2 of 3"):
        decode_telegram(bytes(data), {"87654321": KEY})


@given(st.data())
def test_truncated_telegram(data: st.DataObject) -> None:
    whole = _telegram(key=KEY)
    cut = data.draw(st.integers(0, len(whole) - 1))
    with pytest.raises(DecodeError):
        decode_telegram(whole[:cut], {"87654321": KEY})


def test_truncated_with_crcs_says_so() -> None:
    whole = _telegram(key=KEY)
    with pytest.raises(TruncatedTelegramError, match="announces"):
        decode_telegram(whole[:-5], {"87654321": KEY}, crcs=True)


def test_announced_blocks_missing() -> None:
    plain = _telegram(key=KEY, crcs=False)
    cut = plain[:-16]
    with pytest.raises(TruncatedTelegramError, match="encrypted blocks announced"):
        decode_telegram(bytes([len(cut) - 1]) + cut[1:], {"87654321": KEY}, crcs=False)


def test_unknown_ci_field() -> None:
    plain = bytearray(_telegram(crcs=False))
    plain[10] = 0xA0  # manufacturer-specific CI
    with pytest.raises(UnknownCiError, match="CI field 0xA0 at byte 10"):
        decode_telegram(bytes(plain), {}, crcs=False)


def test_unsupported_security_mode() -> None:
    plain = bytearray(_telegram(crcs=False))
    plain[14] = (plain[14] & 0xE0) | 0x0D  # configuration field: security mode 13 (TLS)
    with pytest.raises(UnsupportedSecurityError, match="security mode 13"):
        decode_telegram(bytes(plain), {}, crcs=False)


def test_altered_mode7_telegram_fails_its_mac() -> None:
    # Two encrypted blocks: altering the last byte garbles block 2 only, so 2F 2F still decrypts.
    plain = bytearray(build_telegram(RECORDS * 2, **METER, key=KEY, security_mode=7, crcs=False))  # type: ignore[arg-type]
    plain[-1] ^= 0x01
    with pytest.raises(AuthenticationError, match="MAC"):
        decode_telegram(bytes(plain), {"87654321": KEY}, crcs=False)


def test_unencrypted_ell_payload_crc_is_checked() -> None:
    plain = bytearray(_telegram(ell="plain", crcs=False))
    plain[-1] ^= 0x01
    with pytest.raises(DecodeError, match="payload CRC"):
        decode_telegram(bytes(plain), {}, crcs=False)


def test_length_field_disagreeing_with_the_data() -> None:
    plain = _telegram(crcs=False)
    with pytest.raises(TruncatedTelegramError):
        decode_telegram(plain + b"\x00", {})
    with pytest.raises(CrcError):
        decode_telegram(add_format_a(plain)[:-1] + b"\x00", {})


def test_builder_refuses_what_it_cannot_send() -> None:
    with pytest.raises(ValueError, match="encrypted blocks"):
        build_telegram(RECORDS * 30, **METER, key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key was given"):
        build_telegram(RECORDS, **METER, key=KEY, security_mode=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="255"):
        build_telegram(bytes(250), **METER)  # type: ignore[arg-type]


@given(
    header=st.binary(min_size=9, max_size=9),
    frame_format=st.sampled_from(["A", "B"]),
)
def test_link_header_alone_with_valid_crcs_is_truncated(header: bytes, frame_format: str) -> None:
    """L = 9: the link header and nothing else, its CRC right (format A: 12 bytes; format B: L = 11,
    12 bytes). The telegram ends before its CI field: a TruncatedTelegramError, not an IndexError."""
    frame = bytes([9]) + header
    data = add_format_a(frame) if frame_format == "A" else add_format_b(frame)
    with pytest.raises(TruncatedTelegramError, match="CI field"):
        decode_telegram(data, {})


def test_noise_in_a_format_b_volume_is_never_a_reading() -> None:
    """The review's proof at the decoder's door: every single-bit error in the volume of format B
    telegrams (over all access numbers) was tried with ``crcs=None``; 224 of 8,192 decoded, one as
    123.457 m3 for 123.456. Now each is a CRC error."""
    for access_no in range(0, 256, 15):
        good = build_telegram(RECORDS, **{**METER, "access_no": access_no}, frame_format="B")  # type: ignore[arg-type]
        at = good.index(bytes.fromhex("0413")) + 2
        for bit in range(32):
            bad = bytearray(good)
            bad[at + bit // 8] ^= 1 << bit % 8
            with pytest.raises(CrcError, match="format B"):
                decode_telegram(bytes(bad), {})
