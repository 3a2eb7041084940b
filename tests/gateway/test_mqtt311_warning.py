"""The gateway warns, once, when it speaks MQTT 3.1.1: Mosquitto acknowledges (PUBACK, success) a
QoS 1 publish its ACL refused, and the gateway deletes the batch the broker dropped; lost without a
word. In MQTT 5 the refusal is reason 135 and the batch stays in the spool."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.gateway.helpers import MqttLink, until

LOST = "is acknowledged all the same"


def _connect_twice(protocol: str, broker_port: int, tmp_path: Path, broker_acl: bool = True) -> tuple[str | None, int]:
    """A publisher through a link to the broker, which is cut once: the protocol spoken, and how
    many connections it made."""

    async def scenario() -> tuple[str | None, int]:
        link = MqttLink(broker_port)
        await link.start()
        spool = Spool(tmp_path / "s.sqlite")
        spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
        options = MqttOptions(
            protocol=protocol,  # type: ignore[arg-type]
            reconnect_min_s=0.2,
            reconnect_max_s=1.0,
            broker_acl=broker_acl,
        )
        publisher = Publisher(spool, "gw-warn", MqttEndpoint.parse(link.url), options=options)
        publisher.start()
        try:
            await until(lambda: spool.depth() == 0, 30)
            link.drop()
            await until(lambda: publisher.connections >= 2, 60)
            return publisher.protocol_in_use, publisher.connections
        finally:
            await asyncio.to_thread(publisher.stop)
            await link.close()
            spool.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("protocol", "broker_acl", "spoken", "warnings"),
    [("3.1.1", True, "3.1.1", 1), ("auto", True, "5", 0), ("3.1.1", False, "3.1.1", 0)],
)
def test_a_gateway_speaking_mqtt311_is_warned_once_that_a_refused_publish_is_lost(
    tmp_path: Path,
    mosquitto,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
    broker_acl: bool,
    spoken: str,
    warnings: int,
) -> None:
    """Mosquitto 2 forced to MQTT 3.1.1 by the gateway's configuration: warned at the first
    connection, not again at the next; spoken to in MQTT 5 ("auto"): not warned; a broker said to
    have no ACL (the demo's embedded one): nothing it could refuse, not warned."""
    with caplog.at_level(logging.WARNING, logger="gateway.publisher"):
        protocol_in_use, connections = _connect_twice(protocol, mosquitto.port, tmp_path, broker_acl)
    assert (protocol_in_use, connections >= 2) == (spoken, True)
    said = [r for r in caplog.records if r.name == "gateway.publisher" and LOST in r.getMessage()]
    assert len(said) == warnings, caplog.text
    if said:
        assert said[0].levelno == logging.WARNING
        message = said[0].getMessage()
        assert "(configured)" in message and "aquami/v1/gw-warn/#" in message and "MQTT 5" in message
