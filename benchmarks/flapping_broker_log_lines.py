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
reminders, every 5 minutes of real time, do not scale: 12 an hour come beside the counts here. The
lines at WARNING or above an hour of such a link (what pages an operator alerting on warnings) are
estimated so: a kind said at half the drops or more scaled to the hour, the others once, the two
said every 5 minutes (the outage's reminder, the connections ended soon after they were accepted)
12 times. paho's ``failed to receive on socket: [Errno 104] Connection reset by peer`` (ERROR)
came at every drop, 360 an hour, while the outage said ``connection lost: Unspecified error``; now
the outage says the socket's error, and paho's line is at DEBUG (:mod:`aquami.paho_log`).

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
        self.warning_or_above: Counter[str] = Counter()  # of those kinds, lines at WARNING or above
        self.first_unavailable = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " unavailable (" in message and not self.first_unavailable:
            self.first_unavailable = message
        if record.name.startswith("paho"):
            kind = f"paho's {logging.getLevelName(record.levelno)}"
        elif message.startswith("connected to "):
            kind = "connected to"
        elif " connections in a row " in message:
            kind = "connections ended"  # at the third short connection, then every 5 minutes
        elif " still unavailable " in message:
            kind = "still unavailable"
        elif " unavailable (" in message:
            kind = "unavailable"
        elif " available again " in message:
            kind = "available again"
        else:
            kind = f"other ({logging.getLevelName(record.levelno)})"
        self.kinds[kind] += 1
        if record.levelno >= logging.WARNING:
            self.warning_or_above[kind] += 1


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def run() -> tuple[_ByKind, int]:
    """The publisher's lines counted by kind over ``DROPS`` drops, and the connections made."""
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
    return counting, made


def warnings_an_hour(warning_or_above: Counter[str]) -> int:
    """Lines at WARNING or above in an hour of the link, from a run's (see the module's words)."""
    per_hour = 3600 / DROP_EVERY_S
    every_5_minutes = {"still unavailable", "connections ended"}
    counts = [n for kind, n in warning_or_above.items() if kind not in every_5_minutes]
    scaled = sum(n * per_hour / DROPS if n >= DROPS / 2 else n for n in counts)
    return round(scaled) + 12 * len(every_5_minutes)


def main() -> None:
    counted, connections = run()
    kinds = counted.kinds
    print(
        f"broker link dropped every {DROP_EVERY_S:g} s (time scaled 1:{SCALE:g}): {DROPS} drops, "
        f"{connections} connections, {DROPS * DROP_EVERY_S / 60:.1f} min of such a link"
    )
    for kind, lines in sorted(kinds.items()):
        print(f"  {kind:<20} {lines:4d} lines")
    print(f"at WARNING or above, an hour of such a link: ~{warnings_an_hour(counted.warning_or_above)} lines")
    print(f"the outage's first line: {counted.first_unavailable}")


if __name__ == "__main__":
    main()
