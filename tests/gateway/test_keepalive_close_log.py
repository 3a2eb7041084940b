"""A connection paho closes at its keepalive (a black-holed link: nothing crosses, nothing is closed)
is said by the broker outage alone, with no paho line at ERROR.

paho 2.2 closes the socket in ``loop_misc`` and tells ``on_disconnect`` (Keep alive timeout); that
``loop`` then returns ``MQTT_ERR_CONN_LOST``, and the session's loop ends on it
(gateway.mqtt_session.Session.run). A ``loop`` run again on that client would have paho say
``Client is not connected. Socket: None) …`` at ERROR, paging an operator alerting on ERROR for a
drop the outage's line already says (as the MQTT 5 re-check did before 2026-12-07: gateway.mqtt_recheck).
A guard: it holds on the code as it is, and fails if paho or the session loops a closed client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

KEEPALIVE_S = 2


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"no {what} within {timeout} s"
        time.sleep(0.05)


def test_a_connection_paho_closed_at_its_keepalive_is_said_by_the_outage_not_by_a_paho_error(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:01Z", "volume_m3": 1.0}])
    options = MqttOptions(protocol="auto", keepalive_s=KEEPALIVE_S, reconnect_min_s=0.2, reconnect_max_s=1.0)
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    caplog.set_level(logging.DEBUG, logger="paho")  # (after: set_level sets the capture's level too)
    with CutProxy(mosquitto.port, name="gateway-link") as link:
        endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{link.port}")
        publisher = Publisher(spool, "gw-keepalive", endpoint, options=options)
        publisher.start()
        try:
            _wait(lambda: spool.depth() == 0, 30, "first delivery")
            link.black_hole()
            _wait(lambda: not publisher.connected.is_set(), 4 * KEEPALIVE_S, "keepalive noticing")
            time.sleep(2 * KEEPALIVE_S)  # the session's loop after paho closed it, and CONNECTs into the hole
        finally:
            publisher.stop()
            spool.close()
    paho = [r.getMessage() for r in caplog.records if r.name == "paho"]
    assert "Sending PINGREQ" in paho  # paho's lines are captured: the keepalive ran out on them
    assert [r.getMessage() for r in caplog.records if r.name == "paho" and r.levelno >= logging.ERROR] == []
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.publisher"]
    assert any("(connection lost: Keep alive timeout)" in m for m in said), said
