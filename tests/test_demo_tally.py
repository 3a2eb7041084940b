"""The demo's count at stop says where readings still in the gateway's spool go."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from aquami.demo_tally import Tally

SPOOL = Path("/var/demo/gateway-spool.sqlite")


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.booleans())
def test_the_line_gives_the_counts_and_says_what_becomes_of_what_is_left(
    polled: int, stored: int, left: int, kept: bool
) -> None:
    line = Tally(polled, stored, left).line(SPOOL, spool_kept=kept)
    assert f"{polled} readings polled, {stored} stored, {left} left in the gateway's spool" in line
    assert (str(SPOOL) in line) == (left > 0 and kept)
    assert ("removed with the demo's temporary folder" in line) == (left > 0 and not kept)
