"""A broker's size limit that it does not announce, learned from the connections it ends.

MQTT 5 brokers may announce the largest packet they take (CONNACK's Maximum Packet Size), and the
gateway's ``[mqtt] max_packet_size`` says it for the others; but a broker may end the connection
on a publish under that. Mosquitto's ``message_size_limit`` is announced to no one: an MQTT 5
client gets PUBACK 0x95 ("packet too large"), which MQTT 5 does not allow in a PUBACK, so paho
takes it for a protocol error and closes the connection; its ``max_packet_size`` closes an MQTT
3.1.1 client's connection; cloud brokers close theirs too. The oldest batches go first after a
reconnect, so the batch too large went first every time, the connection ended again, and nothing
was delivered for good, with the readings held in the spool for as long as the gateway ran.

Two connections in a row that the gateway did not end, each ended with a message in flight (a
batch, mostly) larger than any the broker acknowledged in this run (what was in flight at the first
end goes again first after the reconnect), make half the smaller of those two sizes the limit, as in
a bisection: messages are kept to it from then on, until the gateway restarts
(:class:`gateway.inflight.InFlight` reseals a batch over it, and a single reading or an event over
it stays in the spool, said once); should the broker end two more, it is halved again. A link that
drops now and then seldom ends two connections in a row with messages larger than any the broker
took in flight, and never learns a limit below what the broker took (nor :data:`SMALLEST_LEARNED`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.publisher_state import log

#: No limit is learned below this (``[mqtt] max_packet_size``'s lowest value): a link that keeps
#: dropping before the broker acknowledged anything cannot shrink batches below a dozen readings
SMALLEST_LEARNED = 1024


class LearnedSizeLimit:
    """The largest packet the broker is taken to take (:attr:`limit`; None: nothing learned)."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self._largest_taken = 0  # the largest packet the broker acknowledged, in bytes
        self._last_end: int | None = None  # the largest message in flight, over that, at the last connection's end

    def taken(self, size: int) -> None:
        """The broker acknowledged a packet of ``size`` bytes: no limit is learned at or below it."""
        self._largest_taken = max(self._largest_taken, size)

    def connection_ended(self, unacknowledged: Iterable[int]) -> bool:
        """A connection the gateway did not end has ended with messages of these packet sizes in
        flight (batches, events, statuses). True: a limit was learned (or lowered) from it, and the
        next connection may go at once: the broker is there, and what ended this one will not go
        again (an event or a status over the limit is kept or sent smaller, as for an announced one).

        The largest message in flight, not the oldest: a broker that closes the connection on
        reading a packet too large may not have sent the PUBACKs of those before it yet."""
        floor = max(self._largest_taken, SMALLEST_LEARNED)
        largest = max((size for size in unacknowledged if size > floor), default=None)
        last, self._last_end = self._last_end, largest
        if largest is None or last is None or last <= floor:
            return False
        self._last_end = None
        size = min(largest, last)
        first = self.limit is None
        # halved, as in a bisection: the limit lies between what the broker took and this size, and
        # batches just under this size (readings differ in length) would end the next connections
        halved = max(size // 2, floor)
        self.limit = halved if self.limit is None else min(self.limit, halved)
        log.log(
            logging.WARNING if first else logging.INFO,  # said once; lowered after, at INFO
            "the broker ended two connections in a row with messages of %d bytes and more in flight, larger than "
            "any it acknowledged, as a broker does on a message over a limit it does not announce (Mosquitto's "
            "message_size_limit): batches are kept to %d bytes until the gateway restarts; set [mqtt] "
            "max_packet_size to the broker's limit",
            size,
            self.limit,
        )
        return True
