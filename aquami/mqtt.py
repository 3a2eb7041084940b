"""MQTT connection settings shared by the gateway and the collector: one URL says where and how.

``mqtt://user:password@host:1883`` or ``mqtts://host:8883`` (TLS). paho-mqtt 2.x clients are made
here so both sides speak the same protocol version with the same defaults. A URL as given is never
written out whole: :func:`redacted` hides its password in every message that shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt


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


def redacted(url: str) -> str:
    """``url`` with its password as ``***``, for a message: ``mqtt://coll:***@host:1883``. Read from
    the text, not a parse, so a URL too broken to parse (no scheme, a ``/``, ``#`` or ``@`` in the
    password) hides it too: everything between the user's ``:`` and the last ``@`` goes."""
    before, at, host = url.rpartition("@")
    scheme, separator, userinfo = before.partition("://")
    if not (separator and _SCHEME.fullmatch(scheme)):
        scheme, separator, userinfo = "", "", before
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}{separator}{user}:***@{host}"


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


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


def new_client(endpoint: MqttEndpoint, client_id: str, *, manual_ack: bool = False) -> Client:
    """A paho 2.x client for ``endpoint`` speaking MQTT 3.1.1 (every broker has it; MQTT 5 is opt-in)."""
    client = Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
        manual_ack=manual_ack,
    )
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
