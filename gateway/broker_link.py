"""What the publisher knows of its broker from one session to the next: whether it is away (said as
an outage), how many sessions it accepted, in which MQTT version, and the MQTT 3.1.1 warning said
once per run."""

from __future__ import annotations

from aquami.outage import Outage
from gateway.publisher_state import PublisherState, log


class BrokerLink:
    """Written by each session (:class:`gateway.mqtt_session.Session`) on the publisher's thread;
    the counts are read from any."""

    def __init__(self, state: PublisherState) -> None:
        self._state = state
        # said when the broker goes (or cannot be reached, or refuses), every 5 minutes while it stays
        # away, and when it is back: before, a warning at every reconnection attempt
        self.outage = Outage(log, f"MQTT broker {state.endpoint.url}")
        self.connections = 0
        self.protocol_in_use: str | None = None
        self._said_mqtt311_loses_refusals = False

    def accepted(self, protocol: str) -> None:
        """The broker accepted a session, in MQTT ``protocol``."""
        self.connections += 1
        self.outage.recovered()
        self.protocol_in_use = protocol

    def say_once_if_mqtt311_loses_refusals(self) -> None:
        """MQTT 3.1.1 has no way to refuse a publish: Mosquitto acknowledges (PUBACK) a QoS 1 message
        its ACL dropped, and the spool deletes the batch as delivered. MQTT 5 says reason 135 (not
        authorised), and the batch stays. Said once per run, at the first MQTT 3.1.1 connection."""
        options = self._state.options
        if self.protocol_in_use != "3.1.1" or not options.broker_acl or self._said_mqtt311_loses_refusals:
            return
        self._said_mqtt311_loses_refusals = True
        why = "configured" if options.protocol == "3.1.1" else "the broker did not take MQTT 5"
        log.warning(
            "MQTT 3.1.1 with %s (%s): a publish the broker's ACL refuses is acknowledged all the same, so the "
            "gateway deletes what the broker dropped, and it is lost; make sure this gateway may publish to "
            '%s/%s/#, or use MQTT 5 (protocol = "auto" or "5")',
            self._state.endpoint.url,
            why,
            self._state.topic_root,
            self._state.gateway_id,
        )
