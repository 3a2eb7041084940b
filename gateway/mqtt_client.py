"""The paho client each session connects with: MQTT version, client id, credentials, TLS, last
will, and the publisher's callbacks, each guarded."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import paho.mqtt.client as mqtt

from gateway.mqtt_session import Session
from gateway.mqtt_version import Version

log = logging.getLogger("gateway.publisher")  # one logger for all the publisher's modules, as operators know it


class ClientFactory(Session):
    """Makes each session's client."""

    def _new_client(self, version: Version | None = None) -> mqtt.Client:
        version = version or self._version.version
        protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            **kwargs,
        )
        client.max_inflight_messages_set(self.window + 64)  # our window bounds batches; room for the rest
        client.max_queued_messages_set(0)
        client.connect_timeout = 10.0
        if self.endpoint.username is not None:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            o = self.options
            client.tls_set(
                ca_certs=str(o.ca_file) if o.ca_file else None,
                certfile=str(o.cert_file) if o.cert_file else None,
                keyfile=str(o.key_file) if o.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.enable_logger(logging.getLogger("paho"))
        # An exception that leaves a callback ends the session, and the next one meets the same bug:
        # reconnecting for ever, nothing delivered. Each is caught, logged, and stops the publisher.
        guarded = self._guard
        client.on_connect = guarded(self._on_connect)
        client.on_disconnect = guarded(self._on_disconnect)
        client.on_publish = guarded(self._on_publish)
        client.on_message = guarded(self._on_message)
        log.debug("new MQTT %s client for %s", version, self.endpoint.url)
        return client
