"""Counts said with their noun agree in number: ``1 attempt``, not ``1 attempts``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aquami.counted import counted, waits


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert counted(1, "attempt") == "1 attempt"
    assert counted(0, "attempt") == "0 attempts"
    assert counted(3, "message") == "3 messages"
    assert counted(1_500, "entry", "entries") == "1,500 entries"
    assert waits(1) == "1 message waits"
    assert waits(2) == "2 messages wait"


@given(st.integers(min_value=0, max_value=10**9))
def test_the_noun_is_plural_exactly_when_the_count_is_not_one(count: int) -> None:
    said = counted(count, "reading")
    assert said.endswith("readings") == (count != 1)
    assert int(said.split()[0].replace(",", "")) == count
