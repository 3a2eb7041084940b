"""The size limit learned from connections a broker ended (gateway.size_limit), against a model:
whatever the broker takes and however connections end, a limit is learned only at an end the broker
said was for a packet too large (DISCONNECT 0x95), or at the second of two ends in a row each with a
message in flight larger than anything the broker took; the limit is one byte under the size shown
over it (the largest such message at a 0x95 end, else the smaller of the two), never below what the
broker took (nor SMALLEST_LEARNED); batches are aimed at half that size, never over the limit; and
once learned both only come down (batches' aim
not below what the broker took since)."""

from __future__ import annotations

from hypothesis import event, given
from hypothesis import strategies as st

from gateway.size_limit import SMALLEST_LEARNED, LearnedSizeLimit

sizes = st.integers(1, 200_000)
in_flight = st.lists(sizes, max_size=4)  # the packet sizes of the messages in flight
ended = st.tuples(st.just("ended"), st.tuples(in_flight, st.booleans()))  # and whether the broker said 0x95
steps = st.lists(st.one_of(st.tuples(st.just("taken"), sizes), ended), max_size=40)


def _at_most(size: int, limit: int | None) -> int:
    return size if limit is None else min(size, limit)


@given(steps)
def test_a_limit_is_learned_only_from_the_brokers_word_or_two_ends_in_a_row_with_large_messages_in_flight(
    steps: list[tuple[str, object]],
) -> None:
    learned = LearnedSizeLimit()
    largest_taken = 0
    last_end: int | None = None  # the largest message over the floor in flight at the last end
    for kind, what in steps:
        before, batches_before = learned.limit, learned.batch_limit
        if kind == "taken":
            assert isinstance(what, int)
            what = _at_most(what, before)  # nothing larger than the limit goes any more
            learned.taken(what)
            largest_taken = max(largest_taken, what)
            assert (learned.limit, learned.batch_limit) == (before, batches_before)
            continue
        assert isinstance(what, tuple)
        sent, too_large = what
        sent = [_at_most(size, before) for size in sent]
        floor = max(largest_taken, SMALLEST_LEARNED)
        largest = max((size for size in sent if size > floor), default=None)
        said = learned.connection_ended(sent, too_large)
        if largest is not None and (too_large or (last_end is not None and last_end > floor)):
            assert said, "the broker's word, or two ends in a row with messages larger than any taken: nothing learned"
            event("learned from 0x95" if too_large else "learned from two ends")
            over = largest if too_large else min(largest, last_end)
            assert learned.limit is not None and learned.batch_limit is not None
            # the largest size not shown over the limit: what would fit is not held (before: half of it)
            assert learned.limit == (max(over - 1, floor) if before is None else min(before, max(over - 1, floor)))
            assert floor <= learned.batch_limit <= learned.limit < over, "what ended them would go again"
            assert learned.batch_limit >= min(over // 2, learned.limit)
            assert batches_before is None or learned.batch_limit <= max(batches_before, floor)
            last_end = None
        else:
            assert not said and (learned.limit, learned.batch_limit) == (before, batches_before)
            last_end = largest
