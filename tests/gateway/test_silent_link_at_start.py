"""A gateway that starts behind a silent link (TCP accepted, nothing answered) is not talking to a
broker without MQTT 5.

With ``protocol = "auto"`` an MQTT 5 CONNECT left unanswered for 3 s makes the gateway try MQTT
3.1.1, as some 3.1.1 brokers cannot parse MQTT 5 and say nothing. A proxy in front of a dead
broker, or a half-open NAT, is as silent; before, a gateway started behind one spoke 3.1.1 for good
once the link was back: a publish the broker's ACL refuses is acknowledged in 3.1.1 (PUBACK), and
the spool deleted readings the broker had dropped. Here the broker's ACL refuses the gateway's
readings and takes its events: in MQTT 5 the refused reading stays in the spool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aquami.contracts.reads import events_topic
from aquami.mqtt import MqttEndpoint
from aquami.outage import Outage
from gateway.config import MqttOptions
from gateway.mqtt_version import CONNACK_WAIT_S
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

pytestmark = pytest.mark.services

KEEPALIVE_S = 5  # the least the configuration takes: a 3.1.1 CONNECT waits this long for its CONNACK
GATEWAY_ID = "gw-silent-start"
#: the gateway may publish its status and events, and read its commands; not its readings
ACL = "topic readwrite aquami/v1/+/status\ntopic readwrite aquami/v1/+/events\ntopic readwrite aquami/v1/+/cmd/#\n"
#: the start of an MQTT 5 CONNECT's variable header: the protocol name and level 5
MQTT5_CONNECT = b"\x00\x04MQTT\x05"


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"no {what} within {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def acl_broker() -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(acl=ACL)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def _publisher(spool: Spool, port: int) -> Publisher:
    options = MqttOptions(protocol="auto", keepalive_s=KEEPALIVE_S, reconnect_min_s=0.2, reconnect_max_s=1.0)
    publisher = Publisher(spool, GATEWAY_ID, MqttEndpoint.parse(f"mqtt://127.0.0.1:{port}"), options=options)
    spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
    publisher.send_durable(events_topic(GATEWAY_ID), b'{"event":"gateway_started"}')
    return publisher


def _delivered_and_refused(publisher: Publisher, spool: Spool, timeout: float) -> tuple[int, int]:
    """Once the event is delivered and the broker has answered the reading (refused in MQTT 5,
    acknowledged in 3.1.1): the readings left in the spool, and the batches refused."""
    _wait(lambda: spool.messages_waiting() == 0, timeout, "delivery of the event")
    _wait(lambda: publisher.refused_batches > 0 or spool.depth() == 0, 10, "answer to the reading")
    return spool.depth(), publisher.refused_batches


def test_a_gateway_started_behind_a_silent_link_speaks_mqtt5_once_it_is_back(
    tmp_path: Path, acl_broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The MQTT 5 CONNECT and the 3.1.1 one after it go into the hole; the link comes back (the held
    connections stay dead). Before: MQTT 3.1.1 from then on, the refused reading acknowledged and
    deleted. Now the unanswered 3.1.1 CONNECT sends the gateway back to MQTT 5."""
    spool = Spool(tmp_path / "s.sqlite")
    with CutProxy(acl_broker.port, name="gateway-link") as link, caplog.at_level(logging.INFO, "gateway.publisher"):
        link.black_hole()
        publisher = _publisher(spool, link.port)
        publisher.start()
        try:
            _wait(lambda: link.connections >= 2, 4 * KEEPALIVE_S, "MQTT 3.1.1 CONNECT after the fallback")
            assert "does not speak MQTT 5" in caplog.text  # fallen back
            link.restore(stale=True)
            left, refused = _delivered_and_refused(publisher, spool, 6 * KEEPALIVE_S)
        finally:
            publisher.stop()
            spool.close()
    said = caplog.text
    assert publisher.protocol_in_use == "5", f"spoke MQTT {publisher.protocol_in_use} once the link was back:\n{said}"
    assert (left, refused > 0) == (1, True), "the reading the broker refused left the spool"
    assert "did not answer in MQTT 3.1.1 either" in said and "answered in MQTT 5: speaking MQTT 5" in said
    assert "is acknowledged all the same" not in said  # the MQTT 3.1.1 warning: never connected in 3.1.1


def test_a_link_back_just_after_the_first_connect_went_into_it_gets_mqtt5(
    tmp_path: Path, acl_broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The link comes back while the first MQTT 5 CONNECT waits in the hole: the 3.1.1 CONNECT
    after the fallback is answered at once. Before, that was taken for a broker without MQTT 5;
    now the gateway hangs up unused and asks in MQTT 5 once more, which is answered."""
    spool = Spool(tmp_path / "s.sqlite")
    with CutProxy(acl_broker.port, name="gateway-link") as link, caplog.at_level(logging.INFO, "gateway.publisher"):
        link.black_hole()
        publisher = _publisher(spool, link.port)
        publisher.start()
        try:
            _wait(lambda: link.connections >= 1, 10, "first CONNECT")
            link.restore(stale=True)  # well within the MQTT 5 CONNECT's 3 s
            left, refused = _delivered_and_refused(publisher, spool, 30)
        finally:
            publisher.stop()
            spool.close()
    said = caplog.text
    assert publisher.protocol_in_use == "5", f"spoke MQTT {publisher.protocol_in_use}:\n{said}"
    assert (left, refused > 0) == (1, True), "the reading the broker refused left the spool"
    assert "asking in MQTT 5 once more" in said and "answered in MQTT 5: speaking MQTT 5" in said
    # MQTT 5 (held), MQTT 3.1.1 (hung up at its CONNACK: not a connection to speak of), MQTT 5
    assert (link.connections, publisher.connections) == (3, 1)


def test_a_link_silent_again_while_mqtt5_is_asked_once_more_is_not_a_broker_without_it(
    tmp_path: Path, acl_broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The race: the link comes back for the 3.1.1 CONNECT after the fallback, and goes silent again
    (for every connection) as MQTT 5 is asked once more. Before, the 3.1.1 session was hung up first
    and that MQTT 5 CONNECT's silence settled MQTT 3.1.1 until restarted: once the link was back, the
    reading the broker's ACL refused was acknowledged and deleted. Now the held 3.1.1 session goes
    silent too, which says the link's silence, and the gateway asks in MQTT 5 again."""
    spool = Spool(tmp_path / "s.sqlite")
    with CutProxy(acl_broker.port, name="gateway-link") as link, caplog.at_level(logging.INFO, "gateway.publisher"):
        link.black_hole()
        publisher = _publisher(spool, link.port)
        publisher.start()
        try:
            _wait(lambda: link.connections >= 1, 10, "first CONNECT")
            link.black_hole_at(MQTT5_CONNECT)  # the next MQTT 5 CONNECT: MQTT 5 asked once more
            link.restore(stale=True)  # well within the first MQTT 5 CONNECT's 3 s
            _wait(lambda: link.connections >= 3, 10, "MQTT 5 CONNECT beside the held 3.1.1 session")
            _wait(lambda: link.connections >= 4, 15, "the CONNECT after the recheck")  # into the hole
            link.restore(stale=True)
            left, refused = _delivered_and_refused(publisher, spool, 30)
        finally:
            publisher.stop()
            spool.close()
    said = caplog.text
    assert publisher.protocol_in_use == "5", f"spoke MQTT {publisher.protocol_in_use}:\n{said}"
    assert (left, refused > 0) == (1, True), "the reading the broker refused left the spool"
    assert "answers in MQTT 3.1.1 but not in MQTT 5" not in said
    assert "went silent while asked in MQTT 5 once more" in said
    # the MQTT 5 connection paho ended at its keepalive (silence, not a drop: no "connection lost") is
    # not looped again: before, paho said "Client is not connected. …" at ERROR for it
    paho = [r.getMessage() for r in caplog.records if r.name == "paho" and r.levelno >= logging.WARNING]
    assert paho == [] and "connection lost" not in said, paho


def test_a_broker_silent_to_mqtt5_behind_a_link_silent_at_start_gets_its_readings_in_mqtt311(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The link is silent at the start, then comes back to a broker that answers MQTT 3.1.1 and
    never MQTT 5 (the proxy holds every MQTT 5 CONNECT): the gateway settles on 3.1.1, delivers,
    and at a later reconnection asks in 3.1.1 straight away, not 3 s in MQTT 5 first."""
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
    options = MqttOptions(protocol="auto", keepalive_s=KEEPALIVE_S, reconnect_min_s=0.2, reconnect_max_s=1.0)
    with CutProxy(mosquitto.port, name="gateway-link") as link, caplog.at_level(logging.INFO, "gateway.publisher"):
        link.black_hole()
        endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{link.port}")
        publisher = Publisher(spool, "gw-deaf-broker", endpoint, options=options)
        publisher.start()
        try:
            _wait(lambda: link.connections >= 2, 4 * KEEPALIVE_S, "MQTT 3.1.1 CONNECT after the fallback")
            link.go_dead_at(MQTT5_CONNECT)
            link.restore(stale=True)
            _wait(lambda: spool.depth() == 0, 8 * KEEPALIVE_S, "delivery in MQTT 3.1.1")
            first = publisher.protocol_in_use
            before = link.connections
            assert link.drop(reset=True) >= 1
            _wait(lambda: publisher.connections >= 2, 20, "reconnection")
            second = publisher.protocol_in_use
        finally:
            publisher.stop()
            spool.close()
    said = caplog.text
    assert (first, second) == ("3.1.1", "3.1.1"), said
    assert link.connections == before + 1, "asked in MQTT 5 again at the reconnection"
    assert said.count("answers in MQTT 3.1.1 but not in MQTT 5") == 1


@pytest.mark.parametrize("connack_wait_s", [CONNACK_WAIT_S, 4.0], ids=["default", "configured"])
def test_a_connect_into_a_silent_spell_gives_up_soon_after_the_link_is_back(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture, connack_wait_s: float
) -> None:
    """The default keepalive (30 s). The MQTT 5 CONNECT goes into the hole and gives up after 3 s;
    the MQTT 3.1.1 CONNECT after it goes into the hole too, and the link comes back (that CONNECT
    stays dead). Before, it waited a keepalive period (30 s) for its CONNACK: the readings were
    delivered about 30 s after the link's return. Now any CONNECT gives up after
    ``[mqtt] connack_wait_s`` (``CONNACK_WAIT_S`` by default), and the next one, in MQTT 5, is answered."""
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
    options = MqttOptions(protocol="auto", reconnect_min_s=0.2, reconnect_max_s=1.0, connack_wait_s=connack_wait_s)
    assert options.keepalive_s == 30
    with CutProxy(mosquitto.port, name="gateway-link") as link, caplog.at_level(logging.INFO, "gateway.publisher"):
        link.black_hole()
        endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{link.port}")
        publisher = Publisher(spool, "gw-silent-spell", endpoint, options=options)
        publisher.start()
        try:
            _wait(lambda: link.connections >= 2, 20, "MQTT 3.1.1 CONNECT after the fallback")
            link.restore(stale=True)
            back = time.monotonic()
            _wait(lambda: spool.depth() == 0, 60, "delivery after the link's return")
            back = time.monotonic() - back
        finally:
            publisher.stop()
            spool.close()
    assert publisher.protocol_in_use == "5", caplog.text
    # the 3.1.1 CONNECT's wait, then a reconnection wait of at most 1 s and an answered CONNECT
    assert back < connack_wait_s + 3, f"delivered {back:.1f} s after the link's return:\n{caplog.text}"


def test_a_drop_while_mqtt5_is_asked_once_more_is_said_as_the_outage_s_not_as_paho_s_error(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5 is asked beside the held 3.1.1 session (its CONNECT left unanswered: the proxy holds
    every MQTT 5 CONNECT), and the link resets the held session's connection (a RST). As on the
    normal link, paho's per-drop line ("failed to receive on socket: [Errno 104] …") is DEBUG, and
    the drop is one of the broker outage's failures, with its reason (here every failure is said:
    reminders every 0 s). Before, both clients' disconnect callbacks were unset while the recheck ran:
    paho said the drop at ERROR, the outage never heard of it, and the recheck went on to say the
    link "went silent", which it had not: it had dropped the connection."""
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
    options = MqttOptions(protocol="auto", keepalive_s=KEEPALIVE_S, reconnect_min_s=0.2, reconnect_max_s=1.0)
    with CutProxy(mosquitto.port, name="gateway-link") as link:
        link.black_hole()
        endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{link.port}")
        publisher = Publisher(spool, "gw-recheck-drop", endpoint, options=options)
        log = logging.getLogger("gateway.publisher")
        publisher.broker = Outage(log, f"MQTT broker {endpoint.url}", remind_every_s=0.0)
        caplog.set_level(logging.INFO, logger="gateway.publisher")
        caplog.set_level(logging.DEBUG, logger="paho")
        publisher.start()
        try:
            _wait(lambda: link.connections >= 1, 10, "first CONNECT")
            link.go_dead_at(MQTT5_CONNECT)  # MQTT 5 asked once more: left unanswered
            link.restore(stale=True)  # the 3.1.1 CONNECT after the fallback: answered at once, held
            _wait(lambda: link.connections >= 3, 10, "MQTT 5 CONNECT beside the held 3.1.1 session")
            _wait(lambda: "asking in MQTT 5 once more" in caplog.text, 5, "the recheck")
            time.sleep(0.5)
            assert link.drop(reset=True) == 1  # the held session's (the MQTT 5 one is half-open: not dropped)
            _wait(lambda: link.connections >= 4, 15, "the CONNECT after the recheck")
        finally:
            publisher.stop()
            spool.close()
    paho = [r for r in caplog.records if r.name == "paho"]
    reset = "failed to receive on socket: [Errno 104] Connection reset by peer"
    assert [r.levelno for r in paho if r.getMessage() == reset] == [logging.DEBUG], [r.getMessage() for r in paho]
    assert [r.getMessage() for r in paho if r.levelno >= logging.WARNING] == []
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.publisher"]
    dropped = [m for m in said if "(connection lost: [Errno 104] Connection reset by peer)" in m]
    assert len(dropped) == 1 and dropped[0].startswith(f"MQTT broker {endpoint.url} still unavailable"), said
    assert not [m for m in said if "went silent while asked in MQTT 5 once more" in m], said
