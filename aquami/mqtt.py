"""MQTT connection settings shared by the gateway and the collector: one URL says where and how.

``mqtt://user:password@host:1883`` or ``mqtts://host:8883`` (TLS). paho-mqtt 2.x clients are made
here so both sides speak the same protocol version with the same defaults. A URL as given is never
written out whole: :func:`redacted` (:mod:`aquami.redact`) hides its password in every message
that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from aquami.redact import redacted

__all__ = ["Client", "MqttEndpoint", "new_client", "redacted"]


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT URL {redacted(url)!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"MQTT URL {redacted(url)!r}: no host")
        try:  # urllib's own message quotes the port's text: with a "/" in the password, part of it
            port = parts.port
        except ValueError:
            raise ValueError(f"MQTT URL {redacted(url)!r}: the port must be a number up to 65535") from None
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class Client(mqtt.Client):
    """paho's client, which also keeps why its last try to connect failed: paho tells its
    ``on_connect_fail`` callback nothing, and a broker not listening, a host name that does not
    resolve and a TLS handshake refused were one silence."""

    last_connect_error: OSError | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as error:
            self.last_connect_error = error
            raise


def new_client(
    endpoint: MqttEndpoint, client_id: str, *, manual_ack: bool = False, clean_session: bool = False
) -> Client:
    """A paho 2.x client for ``endpoint`` speaking MQTT 3.1.1 (every broker has it; MQTT 5 is opt-in).

    Its session persists (``clean_session`` false) unless ``clean_session``: a 3.1.1 broker then
    discards the client id's session at CONNECT, and the new one at DISCONNECT (how
    ``aquami collector leave-group`` ends a collector's session for good)."""
    client = Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=clean_session,
        manual_ack=manual_ack,
    )
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
