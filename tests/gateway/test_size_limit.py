"""The size limit learned from connections a broker ended (gateway.size_limit), against a model:
whatever the broker takes and however connections end, a limit is learned only at the second of
two ends in a row each with a batch in flight larger than anything the broker took, never at or
above the smaller of those two batches, never below what the broker took (nor SMALLEST_LEARNED),
and once learned it only comes down."""

from __future__ import annotations

from hypothesis import event, given
from hypothesis import strategies as st

from gateway.size_limit import SMALLEST_LEARNED, LearnedSizeLimit

sizes = st.integers(1, 200_000)
in_flight = st.lists(sizes, max_size=4)  # the packet sizes of the messages in flight
steps = st.lists(st.one_of(st.tuples(st.just("taken"), sizes), st.tuples(st.just("ended"), in_flight)), max_size=40)


def _at_most(size: int, limit: int | None) -> int:
    return size if limit is None else min(size, limit)


@given(steps)
def test_a_limit_is_learned_only_at_two_ends_in_a_row_with_large_batches_in_flight(
    steps: list[tuple[str, object]],
) -> None:
    learned = LearnedSizeLimit()
    largest_taken = 0
    last_end: int | None = None  # the largest batch over the floor in flight at the last end
    for kind, what in steps:
        before = learned.limit
        if kind == "taken":
            assert isinstance(what, int)
            what = _at_most(what, before)  # nothing larger than the limit goes any more
            learned.taken(what)
            largest_taken = max(largest_taken, what)
            assert learned.limit == before
            continue
        assert isinstance(what, list)
        what = [_at_most(size, before) for size in what]
        floor = max(largest_taken, SMALLEST_LEARNED)
        largest = max((size for size in what if size > floor), default=None)
        said = learned.connection_ended(what)
        if largest is not None and last_end is not None and last_end > floor:
            assert said, "two ends in a row with batches larger than any taken, nothing learned"
            event("learned")
            assert learned.limit is not None
            assert floor <= learned.limit < min(largest, last_end), "the batches that ended them would go again"
            assert learned.limit >= min(largest, last_end) // 2
            assert before is None or learned.limit <= before
            last_end = None
        else:
            assert not said and learned.limit == before
            last_end = largest
