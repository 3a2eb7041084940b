"""What the publisher knows of its broker from one session to the next: whether it is away (said as
an outage), how many sessions it accepted, in which MQTT version, and the MQTT 3.1.1 warnings said
once per run."""

from __future__ import annotations

from aquami.outage import SETTLE_S, Outage
from gateway.publisher_state import PublisherState, log


class BrokerLink:
    """Written by each session (:class:`gateway.mqtt_session.Session`) on the publisher's thread;
    the counts are read from any."""

    def __init__(self, state: PublisherState) -> None:
        self._state = state
        # said when the broker goes (or cannot be reached, or refuses), every 5 minutes while it stays
        # away, and once it has stayed back SETTLE_S: before, a warning at every reconnection attempt,
        # then a pair of warnings at every connection a flapping link dropped
        self.outage = Outage(log, f"MQTT broker {state.endpoint.url}", settle_s=SETTLE_S)
        self.connections = 0
        self.protocol_in_use: str | None = None
        self._said_mqtt311_loses_refusals = False
        self._said_mqtt311_loses_large = False

    def accepted(self, protocol: str) -> None:
        """The broker accepted a session, in MQTT ``protocol``: said (``connected to …``, INFO) at the
        run's first connection and at the first of each outage, when the broker comes back; not at
        the reconnections after it of a link that keeps dropping (a NAT or a cell modem ending each
        connection, a broker ending each over a size limit), which the outage counts as drops and
        says back once it has stayed up (:class:`aquami.outage.Outage`'s ``settle_s``). Before, the
        line came at every reconnection: 360 an hour for a link dropped every 10 s."""
        self.connections += 1
        if not self.outage.ongoing or self.outage.drops == 0:
            log.info("connected to %s (MQTT %s)", self._state.endpoint.url, protocol)
        self.outage.recovered()
        self.protocol_in_use = protocol

    def say_once_what_mqtt311_loses(self) -> None:
        """At an MQTT 3.1.1 connection, what the broker may drop while acknowledging it: said once per run."""
        self.say_once_if_mqtt311_loses_refusals()
        self.say_once_if_mqtt311_loses_large_publishes()

    def say_once_if_mqtt311_loses_large_publishes(self) -> None:
        """Mosquitto's ``message_size_limit`` is announced to no client; MQTT 3.1.1 has no way to
        refuse a publish, so Mosquitto acknowledges (PUBACK) a QoS 1 message over it and drops it,
        and the spool deletes the batch as delivered. (MQTT 5: the connection ends, and the gateway
        learns the limit, :mod:`gateway.size_limit`.) Only ``[mqtt] max_packet_size`` keeps batches
        under it: said once per run, at the first MQTT 3.1.1 connection, where it is not set."""
        options = self._state.options
        if (
            self.protocol_in_use != "3.1.1"
            or not options.broker_acl  # the demo's embedded broker: no limit either
            or options.max_packet_size is not None
            or self._said_mqtt311_loses_large
        ):
            return
        self._said_mqtt311_loses_large = True
        log.warning(
            "MQTT 3.1.1 with %s and no [mqtt] max_packet_size: a batch over a size limit the broker does not "
            "announce (Mosquitto's message_size_limit) is dropped by the broker with a PUBACK, so the gateway deletes "
            "it, and its readings are lost; set max_packet_size to the broker's limit, or use MQTT 5",
            self._state.endpoint.url,
        )

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
