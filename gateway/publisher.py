"""Delivery: publish sealed spool batches and delete each only when the broker has acknowledged it.

One thread owns the MQTT connection and drives paho's network loop itself (``client.loop``), so the
PUBACK callback, the spool work and every publish happen on that thread: no cross-thread handoff
of acknowledgements. Each connection attempt uses a fresh paho client with a clean session; after a
reconnect, every sealed and unacknowledged batch is sent again from the spool, oldest first, with its
original ``batch_seq``. Only the batches in flight when the connection broke can arrive twice, and
the collector's ``(meter_id, ts)`` key makes the repeat a no-op: delivery is at least once.

Delivery is not in order, and need not be: a batch too large for the broker is resealed under new,
higher batch_seqs (:meth:`gateway.inflight.InFlight._reseal`), after batches sealed before it that
go first; a batch an MQTT 5 broker refused goes again after later ones of its window were
acknowledged; a batch of one reading too large waits while later ones go. batch_seq is monotonic
in sealing, not in arrival. The collector keys readings on ``(meter_id, ts)``, checks batch_seq for
neither gaps nor order, and judges nothing by arrival order
(``tests/collector/test_ingest_replay.py``: any order, with repeats, gives the same table;
detection takes up late arrivals by ``received_at``).

Reconnection waits grow exponentially with jitter (:class:`gateway.backoff.Backoff`). With
``protocol = "auto"`` the first attempt speaks MQTT 5, and :class:`gateway.mqtt_version.VersionChoice`
decides when to fall back to MQTT 3.1.1: at once for a broker that says "unsupported protocol
version"; after silence only once a working link has shown it (a silent link is not a broker
without MQTT 5). MQTT 5 matters: only it lets a broker refuse a batch (an MQTT 3.1.1 broker
acknowledges what its ACL drops) and announce the largest packet it takes.

:class:`Publisher` is the entry point; its parts, one job each, are its base classes, on one
object and one thread: :mod:`gateway.connection_thread` (sessions one after another, the waits
between them, what each said of the broker), :mod:`gateway.mqtt_client` (each session's paho
client: version, client id from :mod:`gateway.mqtt_client_id`, TLS, callbacks),
:mod:`gateway.mqtt_session` (CONNECT, CONNACK, the session's loop and end), :mod:`gateway.inflight`
(publishing within the window, PUBACKs settled into the spool; messages as
:mod:`gateway.outgoing` puts them on the wire) and :mod:`gateway.publisher_state` (the settings and
state they share).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from gateway.connection_thread import ConnectionThread
from gateway.health import SavedMeter
from gateway.mqtt_client_id import COMPLIANT_CLIENT_ID_MAX, client_id, compliant_client_id
from gateway.outgoing import Outgoing, encode_batch
from gateway.publisher_state import CommandHandler, FatalHandler

__all__ = [
    "COMPLIANT_CLIENT_ID_MAX",
    "CommandHandler",
    "FatalHandler",
    "Outgoing",
    "Publisher",
    "client_id",
    "compliant_client_id",
    "encode_batch",
]


class Publisher(ConnectionThread):
    """``on_fatal`` is told why the publisher cannot go on (one of paho's callbacks failed: a bug);
    the publisher's thread then ends, and ``aquami gateway run`` stops and exits 1. Everything not
    acknowledged stays in the spool, for the restarted gateway."""

    # called from other threads ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def send_durable(self, topic: str, payload: bytes, meter_health: Iterable[SavedMeter] = ()) -> None:
        """Queue a message (an event) in the spool's database: it survives restarts and is deleted
        on the broker's acknowledgement, like a batch; with the meter health it changes, stored in
        the same transaction (:meth:`gateway.spool.Spool.add_message`)."""
        self.spool.add_message(topic, payload, meter_health=meter_health)

    def send(self, topic: str, payload: bytes, *, retain: bool = False, smaller: bytes | None = None) -> None:
        """Queue a non-batch message; kept (up to the outbox limit, oldest dropped) while offline.
        ``smaller`` goes instead where ``payload`` is larger than the broker takes."""
        self._outbox.append(Outgoing(topic, payload, retain, smaller))

    def stop(self, drain_timeout: float = 0.0) -> None:
        """Stop; with ``drain_timeout``, first give the publisher that long to empty the spool and outbox."""
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:  # (re)connecting included: the broker may be just back
            if self.connected.is_set() and self.spool.depth() == 0 and not self._outbox and not self._waiting():
                break
            time.sleep(0.05)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _waiting(self) -> bool:
        """Durable messages not yet acknowledged."""
        return bool(self._messages_in_flight) or self.spool.messages_waiting() > 0
