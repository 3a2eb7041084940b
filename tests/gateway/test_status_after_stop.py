"""A gateway's health status asked after :meth:`gateway.service.Gateway.run` has stopped (and closed
its spool) says how it ended: "offline", with what the spool held as it closed. Before, it raised
``sqlite3.ProgrammingError: Cannot operate on a closed database`` (the events waiting were counted
in the closed file), and a caller had to know not to ask."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aquami.contracts.status import schema_errors
from gateway.config import parse_config_text
from gateway.service import Gateway
from gateway.spool import Spool
from tests.gateway.helpers import config_text


def test_a_status_asked_after_the_stop_says_offline_and_what_the_spool_held(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    # no broker, no meter answers: the meter's failures and the stop are events left in the spool
    text = config_text("mqtt://127.0.0.1:1", {"b": 1}, {"b": [1]}, str(path), gateway_id="gw-after")
    gateway = Gateway(parse_config_text(text))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, drain_timeout=0))
        await asyncio.sleep(0.5)
        stop.set()
        await task

    asyncio.run(scenario())
    status = gateway.status()
    again = Spool(path)
    try:
        waiting, depth = again.messages_waiting(), again.depth()
    finally:
        again.close()
    assert waiting > 0  # gateway_stopped at least
    assert (status["state"], status["events_waiting"], status["spool_depth"]) == ("offline", waiting, depth)
    assert schema_errors(status) == []
