"""Delivery through a broker with a message size limit it does not announce.

Mosquitto's ``message_size_limit`` (or its ``max_packet_size``, which only MQTT 5 clients are told
of in CONNACK) sets the largest publish it takes. A batch over it ends the connection: Mosquitto
answers an MQTT 5 client with PUBACK 0x95 ("packet too large"), a reason code MQTT 5 does not allow
in a PUBACK, which paho takes for a protocol error, and closes an MQTT 3.1.1 client's connection
(``max_packet_size``). This measures, for each case, how many of the spool's readings the broker
acknowledged within a time, how many connections that took, and how many lines the publisher
logged at WARNING or above; beside it, the baseline: the same gateway told the limit
(``[mqtt] max_packet_size``), as an operator who knew it would. With ``--stop``, how long
``stop(drain_timeout)`` takes once all the spool holds is one reading (or one event) larger than the
broker takes, its limit announced (``max_packet_size``) or learned (``message_size_limit``).

Run ``python -m benchmarks.bench_broker_size_limit [--seconds 30] [--readings 1000] [--stop]``
(Mosquitto must be installed: ``scripts/test-deps``).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.services import MosquittoBroker

LIMIT = 4096
CASES = (("5", f"message_size_limit {LIMIT}"), ("3.1.1", f"max_packet_size {LIMIT}"))


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1


def run(
    protocol: str, setting: str, readings: int, seconds: float, configured: int | None = None
) -> tuple[int, int, int, float]:
    """(readings acknowledged, connections, log lines at WARNING or above, seconds to deliver all);
    ``configured``: the gateway's ``max_packet_size``."""
    broker = MosquittoBroker(settings=[setting])
    broker.start()
    counter = _Count()
    log = logging.getLogger("gateway.publisher")
    log.addHandler(counter)
    level, propagate = log.level, log.propagate
    log.setLevel(logging.WARNING)
    log.propagate = False  # counted, not printed
    with tempfile.TemporaryDirectory() as folder:
        spool = Spool(Path(folder) / "s.sqlite")
        spool.append(
            {"meter_id": f"WM-{n:05d}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n), "flow_m3h": 0.125}
            for n in range(readings)
        )
        options = MqttOptions(
            protocol=protocol,  # type: ignore[arg-type]
            reconnect_min_s=1.0,
            reconnect_max_s=60.0,
            max_packet_size=configured,
        )
        publisher = Publisher(spool, "gw-bench", MqttEndpoint.parse(broker.url), batch_size=500, options=options)
        started = time.monotonic()
        publisher.start()
        took = float("nan")
        try:
            while time.monotonic() - started < seconds:
                if spool.depth() == 0:
                    took = time.monotonic() - started
                    break
                time.sleep(0.05)
            delivered = readings - spool.depth()
            return delivered, publisher.connections, counter.lines, took
        finally:
            publisher.stop()
            log.removeHandler(counter)
            log.setLevel(level)
            log.propagate = propagate
            spool.close()
            broker.stop()


def stop_time(setting: str, kept: str, drain_timeout: float) -> float:
    """Seconds ``stop(drain_timeout)`` takes with one reading or event (``kept``) the broker never
    takes left in the spool, everything else delivered."""
    broker = MosquittoBroker(settings=[setting])
    broker.start()
    log = logging.getLogger("gateway.publisher")
    level = log.level
    log.setLevel(logging.CRITICAL)  # the reading too large is said at ERROR
    with tempfile.TemporaryDirectory() as folder:
        spool = Spool(Path(folder) / "s.sqlite")
        big = {"meter_id": "WM-BIG", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0, "note": "x" * 6000}
        small = ({"meter_id": f"WM-{n:05d}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(20))
        spool.append([big, *small] if kept == "reading" else small)
        options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=0.5)
        publisher = Publisher(spool, "gw-bench", MqttEndpoint.parse(broker.url), batch_size=100, options=options)
        if kept == "event":
            publisher.send_durable("aquami/v1/gw-bench/events", b'{"big":"' + b"x" * 6000 + b'"}')
        publisher.start()
        try:
            deadline = time.monotonic() + 30
            while not (publisher.connected.is_set() and spool.depth() == (kept == "reading")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the readings that fit were not delivered in 30 s")
                time.sleep(0.05)
            time.sleep(0.5)  # the event passed over, or the reading said
            started = time.monotonic()
            publisher.stop(drain_timeout)
            return time.monotonic() - started
        finally:
            publisher.stop()
            log.setLevel(level)
            spool.close()
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--readings", type=int, default=1000)
    parser.add_argument("--stop", action="store_true", help="time stop(drain_timeout=8) instead")
    args = parser.parse_args()
    if args.stop:
        for setting in (f"max_packet_size {LIMIT}", f"message_size_limit {LIMIT}"):
            for kept in ("reading", "event"):
                took = stop_time(setting, kept, 8.0)
                print(f"MQTT 5 {setting:24} one {kept:7} too large left: stop(drain_timeout=8) took {took:.2f} s")
        return
    for protocol, setting in CASES:
        took_by_case: dict[str, float] = {}
        for told, configured in (("not told", None), ("told (baseline)", LIMIT)):
            delivered, connections, lines, took = run(protocol, setting, args.readings, args.seconds, configured)
            took_by_case[told] = took
            print(
                f"MQTT {protocol:5} {setting:24} {told:15}: delivered {delivered}/{args.readings} in "
                f"{args.seconds:g} s (all after {took:.1f} s), {connections} connections, {lines} log lines at WARNING+"
            )
        ratio = _against_baseline(took_by_case["not told"], took_by_case["told (baseline)"])
        print(f"MQTT {protocol:5} {setting:24} {ratio}")


def _against_baseline(took: float, baseline: float) -> str:
    """The time to deliver everything, not told the limit, as a ratio to the baseline's (told it)."""
    if took != took or baseline != baseline:  # NaN: not everything was delivered in the time given
        return "not told the limit: not all delivered in the time given (the baseline: " + (
            "not all either)" if baseline != baseline else f"all after {baseline:.1f} s)"
        )
    return f"not told the limit: all delivered {took / max(baseline, 1e-3):.1f}x the baseline's time (told it)"


if __name__ == "__main__":
    main()
