"""A reload sent from the head-end is said in the gateway's own log, taken or refused."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import Subscriber, config_text, meters, running
from tests.gateway.test_commands import ROOT, command, listening


@pytest.mark.services
def test_a_reload_taken_or_refused_is_in_the_gateways_log(
    tmp_path: Path, mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the reply alone said it: the field box's log showed its meters change, or a broken
    file refused, without a line on why."""
    subscriber = Subscriber(mosquitto.url, [f"{ROOT}/cmd/+/reply"], client_id="reload-log-sub")
    config = tmp_path / "gw.toml"
    replies = {}

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(3))
        await simulator.start()

        def write(units: list[int]) -> None:
            text = config_text(
                mosquitto.url, {"b": simulator.port}, {"b": units}, str(tmp_path / "s.sqlite"), gateway_id="gw-cmd"
            )
            config.write_text(text)

        write([1, 2])
        gateway = Gateway(load_config(config), config_path=config)
        try:
            async with running(gateway):
                await asyncio.to_thread(gateway.publisher.connected.wait, 10)
                await listening(subscriber)
                write([1, 2, 3])
                replies["taken"] = await command(subscriber, "reload", {})
                config.write_text(config.read_text().replace("unit_id = 3", 'unit_id = "3"'))
                replies["refused"] = await command(subscriber, "reload", {})
        finally:
            await simulator.stop()

    caplog.set_level(logging.INFO, logger="gateway.commands")
    try:
        asyncio.run(scenario())
    finally:
        subscriber.close()
    assert replies["taken"]["ok"] is True and replies["refused"]["ok"] is False
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "gateway.commands"]
    reloads = [(level, message) for level, message in said if message.startswith("reload: ")]
    assert reloads[0] == ("INFO", f"reload: configuration read again from {config}: 1 bus, 3 meters"), said
    level, refused = reloads[1]
    assert level == "WARNING" and refused.startswith("reload: configuration not reloaded, the running one kept: ")
    assert replies["refused"]["error"] in refused  # the reply's reason, on one line
    assert len(reloads) == 2, said
