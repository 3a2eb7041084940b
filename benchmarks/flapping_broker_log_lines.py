"""The gateway publisher's log lines for a broker link that is accepted and dropped again and again.

A NAT or a cell modem that ends each connection (a broker that ends each over a size limit) gives
a connection, a drop, a reconnection, a drop…: the broker link is one outage
(:class:`aquami.outage.Outage`, said at its first drop, then every 5 minutes, and back once the
link has stayed up 90 s), and its ``connected to …`` line (INFO) is said at the run's first
connection and at the first reconnection of each outage, not at every one.

Time is scaled: the link (a real Mosquitto behind a TCP proxy that cuts every connection, with a
RST) is dropped every ``DROP_EVERY_S / SCALE`` seconds, ``DROPS`` times; the publisher's lines are
counted by kind (paho's own, which the gateway lets through to its log, beside them). A line said
at every connection comes ``3600 / DROP_EVERY_S`` times an hour of such a link (360 at 10 s); one
said once an outage, once for the whole hour (the link never stays up the 90 s that ends it). The
reminders, every 5 minutes of real time, do not scale: 12 an hour come beside the counts here.

    .venv/bin/python -m benchmarks.flapping_broker_log_lines

(Mosquitto must be installed: ``scripts/test-deps``.)
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

DROP_EVERY_S = 10.0  # what stands for the field's link: dropped every 10 s
SCALE = 10.0
DROPS = 20


class _ByKind(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.kinds: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name.startswith("paho"):
            kind = f"paho's {logging.getLevelName(record.levelno)}"
        elif message.startswith("connected to "):
            kind = "connected to"
        elif " still unavailable " in message:
            kind = "still unavailable"
        elif " unavailable (" in message:
            kind = "unavailable"
        elif " available again " in message:
            kind = "available again"
        else:
            kind = f"other ({logging.getLevelName(record.levelno)})"
        self.kinds[kind] += 1


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def run() -> tuple[Counter[str], int]:
    """The publisher's lines by kind over ``DROPS`` drops, and the connections made."""
    broker = MosquittoBroker()
    broker.start()
    counting = _ByKind()
    loggers = [logging.getLogger("gateway.publisher"), logging.getLogger("paho")]
    kept = [(log.level, log.propagate) for log in loggers]
    for log in loggers:
        log.addHandler(counting)
        log.setLevel(logging.INFO)
        log.propagate = False  # counted, not printed
    try:
        with tempfile.TemporaryDirectory() as folder, CutProxy(broker.port, name="flapping") as proxy:
            spool = Spool(Path(folder) / "s.sqlite")
            endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{proxy.port}")
            options = MqttOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)
            publisher = Publisher(spool, "gw-flapping", endpoint, options=options)
            publisher.start()
            try:
                _wait(lambda: publisher.connections >= 1, 10)
                for _ in range(DROPS):
                    connections = publisher.connections
                    time.sleep(DROP_EVERY_S / SCALE)
                    proxy.drop()
                    _wait(lambda: publisher.connections > connections, 10)  # noqa: B023 (called at once)
                made = publisher.connections
            finally:
                publisher.stop()
                spool.close()
    finally:
        for log, (level, propagate) in zip(loggers, kept, strict=True):
            log.removeHandler(counting)
            log.setLevel(level)
            log.propagate = propagate
        broker.stop()
    return counting.kinds, made


def main() -> None:
    kinds, connections = run()
    print(
        f"broker link dropped every {DROP_EVERY_S:g} s (time scaled 1:{SCALE:g}): {DROPS} drops, "
        f"{connections} connections, {DROPS * DROP_EVERY_S / 60:.1f} min of such a link"
    )
    for kind, lines in sorted(kinds.items()):
        print(f"  {kind:<20} {lines:4d} lines")


if __name__ == "__main__":
    main()
