"""The gateway's MQTT client id, ``aquami-gateway-{gateway_id}``, is over the 23 characters MQTT
requires every broker to take from a gateway_id of 9 characters on; a broker that holds to that
refuses it, and the gateway connects with an id such a broker takes, the same at every start."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.publisher import COMPLIANT_CLIENT_ID_MAX, Publisher, client_id, compliant_client_id
from gateway.spool import Spool
from tests.services import MosquittoBroker
from tests.strict_broker import StrictBroker


@pytest.mark.parametrize("gateway_id", ["gw-1", "gw-north-district-0001", "x" * 64, "a.b:c_d-e"])
def test_the_compliant_client_id_is_one_every_broker_must_take(gateway_id: str) -> None:
    compliant = compliant_client_id(gateway_id)
    assert len(compliant) <= COMPLIANT_CLIENT_ID_MAX and compliant.isascii() and compliant.isalnum()
    assert compliant == compliant_client_id(gateway_id)  # one gateway_id, one id: at every start
    assert compliant != compliant_client_id(gateway_id + "0")


def test_gateway_ids_differing_only_in_punctuation_get_two_client_ids() -> None:
    assert compliant_client_id("gw-1") != compliant_client_id("gw1")


@pytest.mark.services
@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
def test_a_broker_refusing_a_long_client_id_gets_one_it_takes(
    tmp_path: Path, mosquitto: MosquittoBroker, protocol: str
) -> None:
    """Before, the gateway reconnected for ever with the id the broker refused ("refused the
    connection: Client identifier not valid" every 5 minutes): nothing delivered."""
    gateway_id = "gw-north-district-0001"  # aquami-gateway-gw-north-district-0001: 37 characters
    with StrictBroker(mosquitto.port) as broker:
        spool = Spool(tmp_path / "s.sqlite")
        spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
        options = MqttOptions(protocol=protocol, reconnect_min_s=0.2, reconnect_max_s=1.0)  # type: ignore[arg-type]
        publisher = Publisher(spool, gateway_id, MqttEndpoint.parse(broker.url), options=options)
        publisher.start()
        try:
            deadline = time.monotonic() + 30
            while spool.depth() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert spool.depth() == 0, f"nothing delivered; client ids tried: {broker.client_ids}"
        finally:
            publisher.stop()
            spool.close()
        assert broker.refused() == [client_id(gateway_id).encode()]  # refused once, not tried again
        assert broker.taken() == [compliant_client_id(gateway_id).encode()]
