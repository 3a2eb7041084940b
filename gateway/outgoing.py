"""What the publisher sends, as it goes on the wire: messages other than batches, a batch's
``reads`` message, and the size of a PUBLISH (held against the broker's largest packet)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from aquami.contracts.reads import ReadsBatch


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message other than a batch (status, event, command reply): QoS 1, not spooled."""

    topic: str
    payload: bytes
    retain: bool = False
    #: what to send instead when ``payload`` is larger than the broker takes (a status without its
    #: details); without one, such a message is dropped and logged: published, the broker would
    #: close the connection, and the next one would try it again
    smaller: bytes | None = None


def encode_batch(gateway_id: str, batch_seq: int, bodies: list[str]) -> bytes:
    """The ``reads`` message (:class:`aquami.contracts.reads.ReadsBatch`'s JSON) with the readings'
    stored JSON spliced in as is: decoding and re-encoding them would cost more than the rest."""
    head = ReadsBatch(gateway_id, batch_seq, datetime.now(UTC)).to_json()
    del head["readings"]
    return (json.dumps(head, separators=(",", ":"))[:-1] + ',"readings":[' + ",".join(bodies) + "]}").encode()


def packet_size(topic: str, payload: bytes) -> int:
    """The most a PUBLISH of ``payload`` on ``topic`` takes on the wire at QoS 1 or 2: fixed header
    (1 byte and up to 4 of length), topic (2 + its UTF-8), packet id (2) and MQTT 5's property
    length (1, no properties)."""
    return 5 + 2 + len(topic.encode()) + 2 + 1 + len(payload)
