"""Small pieces of the gateway: the batch encoder, the backoff, the scheduler's grid and jitter."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.reads import schema_errors
from gateway.backoff import Backoff
from gateway.publisher import encode_batch

reading_st = st.fixed_dictionaries(
    {
        "meter_id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True),
        "ts": st.just("2026-01-01T00:00:00.123Z"),
        "volume_m3": st.floats(min_value=0, max_value=1e9, allow_nan=False),
    }
)


@given(st.lists(reading_st, min_size=1, max_size=20), st.integers(min_value=0, max_value=2**53))
def test_spliced_batch_is_the_contract_message(readings: list[dict[str, object]], seq: int) -> None:
    bodies = [json.dumps(r, separators=(",", ":")) for r in readings]
    message = json.loads(encode_batch("gw-1", seq, bodies))
    assert schema_errors(message) == []
    assert (message["gateway_id"], message["batch_seq"], message["readings"]) == ("gw-1", seq, readings)


def test_backoff_doubles_within_jitter_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    waits = [backoff.next() for _ in range(7)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len({round(w, 6) for w in waits[3:]}) == 4  # jittered, not all the same
    backoff.reset()
    assert backoff.next() <= 0.5
