"""A broker's size limit that it does not announce, learned from the connections it ends.

MQTT 5 brokers may announce the largest packet they take (CONNACK's Maximum Packet Size), and the
gateway's ``[mqtt] max_packet_size`` says it for the others; but a broker may end the connection
on a publish under that. Mosquitto's ``message_size_limit`` is announced to no one: an MQTT 5
client gets PUBACK 0x95 ("packet too large"), which MQTT 5 does not allow in a PUBACK, so paho
takes it for a protocol error and closes the connection; its ``max_packet_size`` closes an MQTT
3.1.1 client's connection; cloud brokers close theirs too. The oldest batches go first after a
reconnect, so the batch too large went first every time, the connection ended again, and nothing
was delivered for good, with the readings held in the spool for as long as the gateway ran.

What each end says, and what is learned from it:

- an MQTT 5 broker's DISCONNECT 0x95 ("Packet too large", Mosquitto over its ``max_packet_size``,
  EMQX, HiveMQ) says a packet in flight was over its limit: the largest in flight is over it, and
  one such end is enough;
- a connection ended without a reason (a reset, Mosquitto's PUBACK 0x95 that paho cannot read, a
  cloud broker's close) says nothing for sure: two in a row, each with a message in flight larger
  than any the broker acknowledged in this run (what was in flight at the first end goes again first
  after the reconnect), are taken for the same proof, the smaller of the two sizes over the limit.

The broker's limit then lies between the largest packet it acknowledged and that size. :attr:`limit`
is the largest size not shown over it, one byte under that size: an event, a status or a single
reading over it stays in the spool or goes in its smaller form, said once; what is under it goes.
Before, half that size was the limit for everything, so a 6,000-byte status that ended two
connections of a broker taking 4,096 bytes had every event over 3,027 bytes kept in the spool until
the gateway restarted, though the broker took it. Batches can be sealed at any size, and are aimed
lower (:attr:`batch_limit`, half that size, as in a bisection: batches just under it, readings
differing in length, would end the next connections) until the broker takes them. Each further end
lowers both; neither goes up again until the gateway restarts (:class:`gateway.inflight.InFlight`
reseals a batch over :attr:`batch_limit`). A link that drops now and then seldom ends two
connections in a row with messages larger than any the broker took in flight, and never has a limit
learned below what the broker took (nor :data:`SMALLEST_LEARNED`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.publisher_state import log

#: No limit is learned below this (``[mqtt] max_packet_size``'s lowest value): a link that keeps
#: dropping before the broker acknowledged anything cannot shrink batches below a dozen readings
SMALLEST_LEARNED = 1024


#: DISCONNECT reason 0x95, "Packet too large" (MQTT 5.0, 3.14.2.1): the broker's own word that a
#: packet it read was over its limit
PACKET_TOO_LARGE = 0x95


class LearnedSizeLimit:
    """The largest packet the broker is taken to take (:attr:`limit`; None: nothing learned), and the
    size batches are sealed to meanwhile (:attr:`batch_limit`)."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.batch_limit: int | None = None
        self._largest_taken = 0  # the largest packet the broker acknowledged, in bytes
        self._last_end: int | None = None  # the largest message in flight, over that, at the last connection's end

    def taken(self, size: int) -> None:
        """The broker acknowledged a packet of ``size`` bytes: no limit is learned at or below it."""
        self._largest_taken = max(self._largest_taken, size)

    def connection_ended(self, unacknowledged: Iterable[int], too_large: bool = False) -> bool:
        """A connection the gateway did not end has ended with messages of these packet sizes in
        flight (batches, events, statuses); ``too_large``: the broker said why, DISCONNECT 0x95. True:
        a limit was learned (or lowered) from it, and the next connection may go at once: the broker
        is there, and what ended this one will not go again (an event or a status over the limit is
        kept or sent smaller, as for an announced one).

        The largest message in flight, not the oldest: a broker that closes the connection on
        reading a packet too large may not have sent the PUBACKs of those before it yet."""
        floor = max(self._largest_taken, SMALLEST_LEARNED)
        largest = max((size for size in unacknowledged if size > floor), default=None)
        last, self._last_end = self._last_end, largest
        if largest is None:
            return False
        if too_large:  # the broker's word: this end alone
            over = largest
        elif last is None or last <= floor:
            return False
        else:
            over = min(largest, last)
        self._last_end = None
        first = self.limit is None
        # the largest size not shown over the limit: what is under it goes
        limit = max(over - 1, floor)
        self.limit = limit if self.limit is None else min(self.limit, limit)
        # batches halved, as in a bisection: the limit lies between what the broker took and this size,
        # and batches just under this size (readings differ in length) would end the next connections
        # (never below what the broker took: a single reading over the batches' aim may have gone since)
        halved = min(max(over // 2, floor), self.limit)
        self.batch_limit = halved if self.batch_limit is None else max(min(self.batch_limit, halved), floor)
        why = (
            "the broker ended a connection saying a packet was too large (DISCONNECT 0x95) with messages of %d "
            "bytes and more in flight"
            if too_large
            else "the broker ended two connections in a row with messages of %d bytes and more in flight, larger "
            "than any it acknowledged, as a broker does on a message over a limit it does not announce (Mosquitto's "
            "message_size_limit)"
        )
        log.log(
            logging.WARNING if first else logging.INFO,  # said once; lowered after, at INFO
            why + ": messages of %d bytes and more are kept or sent smaller, and batches sealed to %d bytes, "
            "until the gateway restarts; set [mqtt] max_packet_size to the broker's limit",
            over,
            self.limit + 1,
            self.batch_limit,
        )
        return True
