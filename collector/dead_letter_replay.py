"""Store the readings and events refused for a meter's gateway once the meter is assigned to it.

A reading or meter event from a gateway its meter was not assigned to is a dead letter naming the
meter and the gateway (collector migration 0066), its payload that meter's readings alone (or the
event). Once an operator assigns the meter to that gateway, those letters are parsed again and
written as the collector writes a message (held to the meter's gateways again, late readings noted
for VEE), and deleted: a letter replayed twice stores nothing twice, as a redelivery does.

Only the letters of the gateways the meter is assigned to now are replayed, all of them: the
operator's assignment says the gateway is the meter's, and what it sent before the records said so
is stored (a reading stored already for the same time stays; the letter's, if it differs, goes
to ``reading_conflicts``). The letters of a gateway the meter moved away from are left as they are:
what it measured before the move was stored as it arrived, within the handover
(:data:`collector.meter_gateways.HANDOVER`); what is a letter of it was refused by that move, by the
handover's end, or before it was ever the meter's gateway. Assigned again, its letters are replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from collector.batch_parser import ParsedMessage, RejectedMessage, parse_reads_message
from collector.events_parser import parse_events_message
from collector.store import ReadingStore, StoreResult

# The letters whose meter is now assigned to their gateway, oldest first: not those of a gateway it
# moved away from (a row of meter_gateways with its ``until``). Before, they were replayed too, and
# the store's handover took what they measured before that move: a reading the meter's gateway then
# refused (9999 m3 of a gateway the meter was moved to by mistake, then back) was stored by the
# replay of the move back; what they measured after it was written anew as "refused_again".
_ASSIGNED_NOW = """
SELECT d.id, d.topic, d.payload, d.received_at FROM dead_letters d
JOIN meter_gateways g ON g.meter_id = d.meter_id AND g.gateway_id = d.gateway_id AND g.until IS NULL
WHERE d.meter_id = ANY(%s::text[]) ORDER BY d.id
"""


@dataclass(frozen=True, slots=True)
class Replayed:
    letters: int = 0
    readings_stored: int = 0
    events_stored: int = 0
    refused_again: int = 0  # the meter moved again between the look-up and its store: a dead letter again
    kept: int = 0  # not readable as a message now (out of the collector's bounds): left as they are


def replay(database_url: str, meter_ids: Sequence[str]) -> Replayed:
    """Store what was refused for these meters from the gateways they are assigned to now."""
    store = ReadingStore(database_url)
    readings = events = again = kept = 0
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            letters = conn.execute(_ASSIGNED_NOW, (list(meter_ids),)).fetchall()
            for letter_id, topic, payload, received_at in letters:
                result = _store(store, topic, bytes(payload), received_at)
                if result is None:
                    kept += 1
                    continue
                readings += result.inserted
                events += result.events_inserted
                again += len(result.refused)
                conn.execute("DELETE FROM dead_letters WHERE id = %s", (letter_id,))
    finally:
        store.close()
    return Replayed(len(letters) - kept, readings, events, again, kept)


def _store(store: ReadingStore, topic: str, payload: bytes, received_at: datetime) -> StoreResult | None:
    """The letter written as its message would be, as received then; None if it no longer parses."""
    if topic.endswith("/events"):
        event = parse_events_message(topic, payload, received_at)
        return None if isinstance(event, RejectedMessage) else store.write([], (), event)
    parsed = parse_reads_message(topic, payload, received_at)
    return store.write_messages([parsed]) if isinstance(parsed, ParsedMessage) else None
