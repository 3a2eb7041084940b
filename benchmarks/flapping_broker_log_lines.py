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
from pathlib import Path

from aquami.mqtt import MqttEndpoint
from benchmarks.log_kinds import OUTAGE_KINDS, LinesByKind, wait_until, warnings_an_hour
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

DROP_EVERY_S = 10.0  # what stands for the field's link: dropped every 10 s
SCALE = 10.0
DROPS = 20


#: What the gateway's publisher says of its broker link.
KINDS = (
    ("connected to", lambda message: message.startswith("connected to ")),
    ("connections ended", lambda message: " connections in a row " in message),  # the third, then every 5 min
    *OUTAGE_KINDS,
)


#: Its lines said every 5 minutes of real time, at most: not scaled with the drops.
EVERY_5_MINUTES = {"still unavailable", "connections ended"}


class _ByKind(LinesByKind):
    """The lines by kind, and the outage's first line, to show it."""

    def __init__(self) -> None:
        super().__init__(KINDS)
        self.first_unavailable = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " unavailable (" in message and not self.first_unavailable:
            self.first_unavailable = message
        super().emit(record)


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
                wait_until(lambda: publisher.connections >= 1, 10)
                for _ in range(DROPS):
                    connections = publisher.connections
                    time.sleep(DROP_EVERY_S / SCALE)
                    proxy.drop()
                    wait_until(lambda: publisher.connections > connections, 10)  # noqa: B023 (called at once)
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


def main() -> None:
    counted, connections = run()
    kinds = counted.kinds
    print(
        f"broker link dropped every {DROP_EVERY_S:g} s (time scaled 1:{SCALE:g}): {DROPS} drops, "
        f"{connections} connections, {DROPS * DROP_EVERY_S / 60:.1f} min of such a link"
    )
    for kind, lines in sorted(kinds.items()):
        print(f"  {kind:<20} {lines:4d} lines")
    hourly = warnings_an_hour(counted.warning_or_above, DROPS, DROP_EVERY_S, EVERY_5_MINUTES)
    print(f"at WARNING or above, an hour of such a link: ~{hourly} lines")
    print(f"the outage's first line: {counted.first_unavailable}")


if __name__ == "__main__":
    main()
