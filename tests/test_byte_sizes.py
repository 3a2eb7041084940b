"""Sizes in words (aquami.byte_sizes): a small size is said in bytes or KiB, never rounded to
"0.0 MiB" (the spool's "spool full: 0.0 MiB left …, less than the 0.0 MiB kept", of a 32 KiB reserve)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.byte_sizes import size_in_words

_UNIT = {"bytes": 1, "byte": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


@pytest.mark.parametrize(
    ("size", "said"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (2, "2 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (32 * 1024, "32.0 KiB"),
        (2**20 - 1, "1.0 MiB"),  # not "1024.0 KiB"
        (16 * 2**20, "16.0 MiB"),
        (3 * 2**29, "1.5 GiB"),
        (2**50, "1024.0 TiB"),
    ],
)
def test_sizes_are_said_in_the_unit_that_reads_them(size: int, said: str) -> None:
    assert size_in_words(size) == said


@given(st.integers(0, 2**60))
def test_a_size_said_is_within_rounding_of_itself_in_the_largest_unit_that_says_it_as_1_or_more(size: int) -> None:
    said = re.fullmatch(r"(\d+(?:\.\d)?) (bytes|byte|KiB|MiB|GiB|TiB)", size_in_words(size))
    assert said is not None, size_in_words(size)
    number, unit = float(said[1]), _UNIT[said[2]]
    assert abs(number * unit - size) <= 0.05 * unit  # one decimal, rounded
    assert (said[2] == "byte") == (size == 1)
    if unit == 1:
        assert "." not in said[1] and size < 1024
    else:
        assert number >= 1
        assert number < 1024 or said[2] == "TiB"  # else the next unit says it
