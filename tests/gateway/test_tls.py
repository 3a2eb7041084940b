"""TLS with a client certificate and username/password against a Mosquitto that demands all three."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions, parse_config_text
from gateway.publisher import Publisher
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import config_text, meters, running, until
from tests.gateway.tls_broker import TlsMosquitto

pytestmark = pytest.mark.services


def run_gateway(tmp_path: Path, broker: TlsMosquitto, mqtt_settings: str, seconds: float) -> Gateway:
    async def scenario() -> Gateway:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        text = config_text(
            f"mqtts://127.0.0.1:{broker.tls_port}",
            {"b": simulator.port},
            {"b": [1, 2]},
            str(tmp_path / f"{time.monotonic_ns()}.sqlite"),
            extra_mqtt=mqtt_settings,
        )
        gateway = Gateway(parse_config_text(text))
        async with running(gateway):
            await until(lambda: gateway.publisher.acknowledged_batches >= 2, seconds)
        await simulator.stop()
        return gateway

    return asyncio.run(scenario())


def test_tls_client_certificate_and_password(tmp_path: Path) -> None:
    broker = TlsMosquitto(tmp_path, "gw-test", "s3cret")
    broker.start()
    f = broker.files
    files = f'ca_file = "{f["ca"]}"\ncert_file = "{f["client_cert"]}"\nkey_file = "{f["client_key"]}"\n'
    try:
        good = run_gateway(tmp_path, broker, f'username = "gw-test"\npassword = "s3cret"\n{files}', 20)
        wrong_password = run_gateway(tmp_path, broker, f'username = "gw-test"\npassword = "nope"\n{files}', 3)
        no_certificate = run_gateway(
            tmp_path, broker, f'username = "gw-test"\npassword = "s3cret"\nca_file = "{f["ca"]}"\n', 3
        )
    finally:
        broker.close()
    assert good.publisher.acknowledged_batches >= 2 and good.publisher.connections >= 1
    for refused in (wrong_password, no_certificate):
        assert refused.publisher.connections == 0 and refused.publisher.acknowledged_batches == 0
        assert refused.readings_spooled > 0  # the readings wait in the spool


def test_a_tls_file_that_does_not_load_is_tried_again(tmp_path: Path) -> None:
    """A CA file that exists but does not load (cut short while being copied, the wrong file): the
    publisher says so and tries again with backoff; once the right file is in place it connects.
    The readings wait in the spool meanwhile."""
    broker = TlsMosquitto(tmp_path, "gw-test", "s3cret")
    broker.start()
    f = broker.files
    ca = tmp_path / "ca-in-place.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    options = MqttOptions(
        ca_file=ca, cert_file=f["client_cert"], key_file=f["client_key"], reconnect_min_s=0.1, reconnect_max_s=0.3
    )
    endpoint = MqttEndpoint("127.0.0.1", broker.tls_port, tls=True, username="gw-test", password="s3cret")
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
    publisher = Publisher(spool, "gw-test", endpoint, options=options)
    publisher.start()
    try:
        time.sleep(1.0)
        assert publisher.connections == 0
        ca.write_bytes(f["ca"].read_bytes())  # the right file, in place
        deadline = time.monotonic() + 15
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher._thread.is_alive(), "the publisher's thread ended"
        assert publisher.connections >= 1 and spool.depth() == 0
    finally:
        publisher.stop()
        spool.close()
        broker.close()
