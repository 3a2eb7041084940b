"""The retained status/health (aquami/contracts/status.schema.json) in its smaller form, sent by a real
gateway to a real broker that takes less than the whole: only the failing meters, and how many were
left out. (Its whole form is checked in tests/gateway/test_health.py and test_commands.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aquami.contracts.status import schema_errors
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import Subscriber, config_text, meters, running
from tests.services import MosquittoBroker

pytestmark = pytest.mark.services


def test_a_status_larger_than_the_broker_takes_goes_in_a_form_the_schema_takes(tmp_path: Path) -> None:
    broker = MosquittoBroker(settings=["max_packet_size 4096"])  # about 35 meters' status
    broker.start()
    subscriber = Subscriber(broker.url, ["aquami/v1/gw-status/status/health"], client_id="status-sub")

    def trimmed() -> list[dict[str, Any]]:
        return [s for s in subscriber.payloads("/status/health") if "meters_omitted" in s and s["meters"]]

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(60))
        await simulator.start()
        text = config_text(
            broker.url,
            {"b": simulator.port},
            {"b": range(1, 62)},  # unit 61 is absent: it fails, and stays in the smaller form
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-status",
            poll_interval_s=1.0,
            timeout_s=2.0,
            retries=0,
            extra_mqtt='protocol = "5"',  # MQTT 5: the broker's CONNACK says its limit
            extra_top="[health]\nstatus_interval_s = 0.3\n",
        )
        async with running(Gateway(parse_config_text(text))):
            await asyncio.to_thread(subscriber.wait_for, lambda: bool(trimmed()), 30, "a status in its smaller form")
        await simulator.stop()

    try:
        asyncio.run(scenario())
    finally:
        subscriber.close()
        broker.stop()
    statuses = subscriber.payloads("/status/health")
    assert [schema_errors(s) for s in statuses] == [[]] * len(statuses)
    smaller = trimmed()[0]
    assert list(smaller["meters"]) == ["WM-0061"] and smaller["meters_omitted"] == 60
    assert smaller["meters"]["WM-0061"]["last_error"]["message"]
