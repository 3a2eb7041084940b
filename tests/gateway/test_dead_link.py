"""A dead link to the broker (nothing crosses, nothing is closed) is not a broker without MQTT 5.

With ``protocol = "auto"`` the gateway takes an MQTT 5 CONNECT left unanswered for 3 s as a 3.1.1
broker that cannot parse MQTT 5 and says nothing, and speaks 3.1.1 from then on. A link that died
under a running gateway is as silent: its keepalive found the session dead, the next CONNECT went
into the same hole, and the gateway spoke MQTT 3.1.1 to a broker it had spoken MQTT 5 to until it
restarted: no refusals (a publish the broker's ACL drops is acknowledged, and deleted from the
spool) and no announced packet limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.mqtt_version import CONNACK_TIMEOUT_S
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

KEEPALIVE_S = 5
#: How long each CONNECT into the hole waits for its CONNACK (else the keepalive, 5 s): a second past
#: the wait after which an MQTT 5 CONNECT that may fall back gives up, so a fallback on silence shows.
CONNACK_WAIT_S = CONNACK_TIMEOUT_S + 1


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition`` held; an assertion naming ``what`` past ``timeout``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"no {what} within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start


def _reading(n: int) -> dict[str, object]:
    return {"meter_id": "WM-1", "ts": f"2026-01-01T00:00:{n:02d}Z", "volume_m3": float(n)}


def test_a_gateway_that_spoke_mqtt5_keeps_it_across_a_dead_link(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([_reading(1)])
    options = MqttOptions(
        protocol="auto",
        keepalive_s=KEEPALIVE_S,
        connack_wait_s=CONNACK_WAIT_S,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
    )
    with CutProxy(mosquitto.port, name="gateway-link") as link, caplog.at_level(logging.INFO, "gateway.publisher"):
        publisher = Publisher(
            spool, "gw-dead-link", MqttEndpoint.parse(f"mqtt://127.0.0.1:{link.port}"), options=options
        )
        publisher.start()
        try:
            _wait(lambda: spool.depth() == 0, 30, "first delivery")
            assert publisher.protocol_in_use == "5"
            link.black_hole()
            noticed = _wait(lambda: not publisher.connected.is_set(), 4 * KEEPALIVE_S, "keepalive noticing")
            # the CONNECTs after it go into the hole too, each long enough for a fallback (3 s) and more
            _wait(lambda: link.connections >= 3, 4 * KEEPALIVE_S, "second CONNECT into the hole")
            spool.append([_reading(2)])
            link.restore(stale=True)
            back = _wait(lambda: spool.depth() == 0, 6 * KEEPALIVE_S, "delivery after the link's return")
        finally:
            publisher.stop()
            spool.close()
    said = caplog.text
    assert publisher.protocol_in_use == "5", f"spoke {publisher.protocol_in_use} after the link came back:\n{said}"
    assert "does not speak MQTT 5" not in said
    assert noticed <= 2 * KEEPALIVE_S + 1, noticed  # paho: a PINGREQ after one keepalive, given up after two
    assert back < 2 * KEEPALIVE_S + 5, back
