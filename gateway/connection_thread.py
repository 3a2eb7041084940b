"""The publisher's thread: a session after another, with the reconnection waits between them; after
each, what it said of the broker (a refused client id, the MQTT version, a connection dropped soon
after it was accepted, and why as far as the broker said)."""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.mqtt_client import ClientFactory
from gateway.mqtt_client_id import CLIENT_ID_NOT_VALID, COMPLIANT_CLIENT_ID_MAX, compliant_client_id
from gateway.mqtt_session import close_client
from gateway.mqtt_version import connack_code

log = logging.getLogger("gateway.publisher")  # one logger for all the publisher's modules, as operators know it

#: A connection that lasted this long was a good one: the reconnection waits start again from the
#: shortest. One dropped sooner (a broker that crash-loops, or another client taking over the same
#: client id, i.e. gateway_id) leaves them growing: they were reset at every CONNACK, and the gateway
#: reconnected every second for as long as that went on.
_STABLE_S = 30.0


class ConnectionThread(ClientFactory):
    """Connects, runs a session, and connects again, until stopped."""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._new_client()
            except Exception:  # a TLS file that does not load (yet): say so, try again after a while
                log.exception("cannot set up an MQTT client for %s", self.endpoint.url)
                self._stop.wait(self._backoff.next())
                continue
            self._client = client
            try:
                self._session(client)
            except Exception:  # the thread must outlive any one bad moment; the spool keeps the data
                log.exception("MQTT session failed")
            finally:
                client = self._client or client
                try:
                    self._settle_acks()
                except Exception:  # a failing disk: what was acknowledged stays in the spool and goes again
                    log.exception("cannot delete acknowledged messages from the spool")
                self.connected.clear()
                self._in_flight.clear()
                self._highest_sent = 0
                self._messages_in_flight.clear()
                self._highest_message_sent = 0
                close_client(client)
            if self._stop.is_set():
                break
            self._note_how_long_it_lasted()
            if self._client_id_refused():
                continue
            if self._version.ended(connack_code(self._connack), self._connack_timed_out):
                continue
            delay = self._backoff.next()
            log.debug("reconnecting to %s in %.1f s", self.endpoint.url, delay)
            self._stop.wait(delay)

    def _note_how_long_it_lasted(self) -> None:
        """After a session: a connection that lasted starts the reconnection waits afresh; one after
        another dropped soon after CONNACK are counted, and said."""
        if self._connected_at is None:
            return
        lasted = time.monotonic() - self._connected_at
        self._connected_at = None
        if lasted >= _STABLE_S:
            self._backoff.reset()
            self.short_connections = 0
            self.taken_over = 0
            return
        self.short_connections += 1
        self.taken_over += self._session_taken_over
        if self.short_connections >= 3:
            self._say_short_connections()

    def _say_short_connections(self) -> None:
        """Why connections keep ending soon after CONNACK, as far as the broker said. Only an MQTT 5
        broker says that another client took the session over (two gateways on one gateway_id);
        before, that was what the warning said of any run of short connections, a link that merely
        kept dropping included, pointing the operator at a duplicate that did not exist."""
        head = "%d connections in a row to %s ended within %.0f s of being accepted"
        args: tuple[Any, ...] = (self.short_connections, self.endpoint.url, _STABLE_S)
        if self.taken_over:
            log.warning(
                head + ", %d of them taken over by another client with the client id %r (the broker said "
                '"Session taken over"): another gateway is configured with gateway_id %r',
                *args,
                self.taken_over,
                self.client_id,
                self.gateway_id,
            )
        elif self.protocol_in_use == "5":
            log.warning(
                head + " without a reason from the broker: the network or the broker keeps dropping the "
                'connection (another client with this client id would have been said: "Session taken over", '
                "from an MQTT 5 broker such as Mosquitto 2.0.15 on)",
                *args,
            )
        else:
            log.warning(
                head + " (MQTT 3.1.1: the broker gives no reason): the network or the broker keeps dropping "
                "the connection, or another gateway is configured with gateway_id %r (the broker lets one "
                "client at a time use its client id)",
                *args,
                self.gateway_id,
            )

    def _client_id_refused(self) -> bool:
        """Did this session's broker refuse the client id (CONNACK 0x85, or 3.1.1's return code 2)?
        The first time, the next connection, at once, uses :func:`compliant_client_id`; before, the
        gateway reconnected for ever with an id the broker would never take ("refused the
        connection: Client identifier not valid", every 5 minutes), nothing delivered."""
        if connack_code(self._connack) != CLIENT_ID_NOT_VALID:
            return False
        compliant = compliant_client_id(self.gateway_id)
        if self.client_id == compliant:
            return False  # (refused too: said as the broker's refusal, and tried again after a wait)
        log.warning(
            "%s refused the client id %r (%d characters; MQTT brokers need take only 1 to %d letters and digits): "
            "connecting as %r",
            self.endpoint.url,
            self.client_id,
            len(self.client_id),
            COMPLIANT_CLIENT_ID_MAX,
            compliant,
        )
        self.client_id = compliant
        return True
