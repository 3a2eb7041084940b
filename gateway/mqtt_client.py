"""The paho client each session connects with (MQTT version, client id, credentials, TLS, last
will; the session sets its callbacks), and which client id that is."""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt

from aquami.paho_log import pass_paho_log
from gateway.mqtt_client_id import CLIENT_ID_NOT_VALID, COMPLIANT_CLIENT_ID_MAX, client_id, compliant_client_id
from gateway.mqtt_version import Version, VersionChoice, connack_code
from gateway.publisher_state import PublisherState, log


class ClientFactory:
    """Makes each session's client, in the version :class:`gateway.mqtt_version.VersionChoice` says."""

    def __init__(self, state: PublisherState, version: VersionChoice) -> None:
        self._state = state
        self._version = version
        #: the MQTT client id: :func:`client_id`, or :func:`compliant_client_id` once a broker refused it
        self.client_id = client_id(state.gateway_id)

    def new_client(self, version: Version | None = None) -> mqtt.Client:
        version = version or self._version.version
        protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            **kwargs,
        )
        client.max_inflight_messages_set(self._state.window + 64)  # our window bounds batches; room for the rest
        client.max_queued_messages_set(0)
        client.connect_timeout = 10.0
        endpoint = self._state.endpoint
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            o = self._state.options
            client.tls_set(
                ca_certs=str(o.ca_file) if o.ca_file else None,
                certfile=str(o.cert_file) if o.cert_file else None,
                keyfile=str(o.key_file) if o.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(self._state.status_topic, b"offline", qos=1, retain=True)
        pass_paho_log(client)  # a dropped connection's own ERROR goes into the outage's words
        log.debug("new MQTT %s client for %s", version, endpoint.url)
        return client

    def id_refused(self, connack: Any) -> bool:
        """Did this session's broker refuse the client id (``connack``: CONNACK 0x85, or 3.1.1's
        return code 2)? The first time, the next connection, at once, uses
        :func:`compliant_client_id`; before, the gateway reconnected for ever with an id the broker
        would never take ("refused the connection: Client identifier not valid", every 5 minutes),
        nothing delivered."""
        if connack_code(connack) != CLIENT_ID_NOT_VALID:
            return False
        compliant = compliant_client_id(self._state.gateway_id)
        if self.client_id == compliant:
            return False  # (refused too: said as the broker's refusal, and tried again after a wait)
        log.warning(
            "%s refused the client id %r (%d characters; MQTT brokers need take only 1 to %d letters and digits): "
            "connecting as %r",
            self._state.endpoint.url,
            self.client_id,
            len(self.client_id),
            COMPLIANT_CLIENT_ID_MAX,
            compliant,
        )
        self.client_id = compliant
        return True
