"""The publisher's thread: a session after another, with the reconnection waits between them; after
each, what it said of the broker (a refused client id, the MQTT version, a connection dropped soon
after it was accepted, and why as far as the broker said)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from aquami.outage import REMIND_EVERY_S
from gateway.backoff import Backoff
from gateway.broker_link import BrokerLink
from gateway.inflight import InFlight
from gateway.mqtt_client import ClientFactory
from gateway.mqtt_session import Session, close_client
from gateway.mqtt_version import VersionChoice, connack_code
from gateway.publisher_spool import PublisherSpool
from gateway.publisher_state import PublisherState, log

#: A connection that lasted this long was a good one: the reconnection waits start again from the
#: shortest. One dropped sooner (a broker that crash-loops, or another client taking over the same
#: client id, i.e. gateway_id) leaves them growing: they were reset at every CONNACK, and the gateway
#: reconnected every second for as long as that went on.
_STABLE_S = 30.0


class ConnectionThread:
    """Connects, runs a session, and connects again, until stopped: :meth:`run` is the publisher's
    thread. Its counts are read from any thread."""

    def __init__(
        self,
        state: PublisherState,
        inflight: InFlight,
        clients: ClientFactory,
        version: VersionChoice,
        link: BrokerLink,
        new_session: Callable[[mqtt.Client], Session],
        spool: PublisherSpool,
    ) -> None:
        self._state = state
        self._inflight = inflight
        self._clients = clients
        self._version = version
        self._link = link
        self._new_session = new_session
        self._spool = spool  # the spool failing under the publisher, said apart (its sessions' too)
        self._backoff = Backoff(state.options.reconnect_min_s, state.options.reconnect_max_s)
        self.short_connections = 0  # dropped in a row before _STABLE_S
        self.taken_over = 0  # of those, ended by the broker's "Session taken over" (MQTT 5)
        self._short_said_at = 0.0  # when a run of short connections was last said (monotonic)

    def run(self) -> None:
        stop, url = self._state.stop, self._state.endpoint.url
        while not stop.is_set():
            try:
                client = self._clients.new_client()
            except Exception:  # a TLS file that does not load (yet): say so, try again after a while
                log.exception("cannot set up an MQTT client for %s", url)
                stop.wait(self._backoff.next())
                continue
            session = self._new_session(client)
            learned_size_limit = False
            try:
                session.run()
            except Exception:  # the thread must outlive any one bad moment; the spool keeps the data
                log.exception("MQTT session failed")
            finally:
                # a failing spool: what was acknowledged is kept for the next try (InFlight.settle_acks),
                # said as the spool's episode, once (before: a traceback at each session's end)
                try:
                    self._spool.attempt(self._inflight.settle_acks)
                except Exception:  # not the spool's (a bug): said, and the thread goes on
                    log.exception("cannot delete acknowledged messages from the spool")
                self._state.connected.clear()
                dropped = not stop.is_set() and session.connected_at is not None
                learned_size_limit = self._inflight.end_session(dropped, session.too_large)
                close_client(session.client)  # after a recheck, the client kept
            if stop.is_set():
                break
            if learned_size_limit:
                # the broker is there, and the batch it ended this one on will not go again: the short
                # connections it ended are explained, and the next one goes at once (below)
                self._backoff.reset()
                self.short_connections = self.taken_over = 0
            else:
                self._note_how_long_it_lasted(session)
            if self._clients.id_refused(session.connack):
                continue
            if self._version.ended(connack_code(session.connack), session.connack_timed_out):
                continue
            if learned_size_limit:
                continue
            delay = self._backoff.next()
            log.debug("reconnecting to %s in %.1f s", url, delay)
            stop.wait(delay)

    def _note_how_long_it_lasted(self, session: Session) -> None:
        """After a session: a connection that lasted starts the reconnection waits afresh; one after
        another dropped soon after CONNACK are counted, and said at the third of a run, then every
        REMIND_EVERY_S while it goes on (before, at each one: a warning a drop on a flapping link,
        with the broker outage's reminders saying the drops meanwhile)."""
        if session.connected_at is None:
            return
        lasted = time.monotonic() - session.connected_at
        if lasted >= _STABLE_S:
            self._backoff.reset()
            self.short_connections = 0
            self.taken_over = 0
            return
        self.short_connections += 1
        self.taken_over += session.taken_over
        now = time.monotonic()
        if self.short_connections == 3 or (self.short_connections > 3 and now - self._short_said_at >= REMIND_EVERY_S):
            self._short_said_at = now
            self._say_short_connections()

    def _say_short_connections(self) -> None:
        """Why connections keep ending soon after CONNACK, as far as the broker said. Only an MQTT 5
        broker says that another client took the session over (two gateways on one gateway_id);
        before, that was what the warning said of any run of short connections, a link that merely
        kept dropping included, pointing the operator at a duplicate that did not exist."""
        head = "%d connections in a row to %s ended within %.0f s of being accepted"
        gateway_id = self._state.gateway_id
        args: tuple[Any, ...] = (self.short_connections, self._state.endpoint.url, _STABLE_S)
        if self.taken_over:
            log.warning(
                head + ", %d of them taken over by another client with the client id %r (the broker said "
                '"Session taken over"): another gateway is configured with gateway_id %r',
                *args,
                self.taken_over,
                self._clients.client_id,
                gateway_id,
            )
        elif self._link.protocol_in_use == "5":
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
                gateway_id,
            )
