"""An OMS meter's AES-128 key as written in a gateway's or rig's file: 32 hex digits, and a key
written another way refused with what is wrong with it, never its text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.wmbus.keys import aes_key


@given(st.binary(min_size=16, max_size=16), st.booleans(), st.booleans())
def test_a_key_s_32_digits_are_its_16_bytes(key: bytes, upper: bool, spaced: bool) -> None:
    text = key.hex(" ") if spaced else key.hex()
    assert aes_key(text.upper() if upper else text) == key


@given(st.text(min_size=8, max_size=80))
def test_anything_else_is_refused_without_showing_it(text: str) -> None:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) == 16:
        assert aes_key(text) == key
        return
    with pytest.raises(ValueError) as refused:
        aes_key(text)
    assert "an AES-128 key is 32 hexadecimal digits" in str(refused.value)
    assert text.strip() not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("0x000102030405060708090A0B0C0D0E0F", "written without 0x before them"),
        ("00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F", "this one has ':' in it; write the digits alone"),
        ("00-01-02-03-04-05-06-07-08-09-0A-0B-0C-0D-0E-0F", "this one has '-' in it"),
        ("000102030405060708090A0B0C0D0E0", "this one has 31"),
        ("000102030405060708090A0B0C0D0E0F00", "this one has 34"),
        ("0 00102030405060708090A0B0C0D0E0F", "a space splits a byte of this one"),
        ("000102030405060708090A0B0C0D0E0O", "this one has 'O' in it"),  # the letter O for a zero
    ],
)
def test_a_key_written_another_way_is_refused_saying_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(ValueError) as refused:
        aes_key(text)
    assert said in str(refused.value) and "0A0B0C" not in str(refused.value)
