"""The collector's log lines for a broker link that is accepted and dropped again and again.

A NAT or a cell modem that ends each connection gives a connection, a drop, a reconnection, a drop…:
the collector's broker link is one outage (:class:`aquami.outage.Outage`, said at its first drop,
then every 5 minutes, and back once the link has stayed up 90 s, as the gateway says its broker:
``benchmarks/flapping_broker_log_lines.py``), and its ``subscribed to …`` line (INFO) is said at the
run's first connection and at the first reconnection of each outage, not at every one.

Time is scaled: the link (a real Mosquitto behind a TCP proxy that cuts every connection, with a RST,
once the collector is subscribed) is dropped every ``DROP_EVERY_S / SCALE`` seconds, ``DROPS``
times; the collector's lines (and paho's, which it lets through to its log) are counted by kind. The
link never stays up the 90 s that would end the outage, scaled or not. A line said at every drop
comes ``3600 / DROP_EVERY_S`` times an hour of such a link (360 at 10 s); the reminders, every 5
minutes of real time, do not scale: 12 an hour come beside the counts here. The collector's
database is not asked for in the run (``--database-check`` of an hour, no message sent).

    .venv/bin/python -m benchmarks.collector_flapping_broker_log_lines

(Mosquitto must be installed: ``scripts/test-deps``.)
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from aquami.mqtt import MqttEndpoint
from benchmarks.log_kinds import OUTAGE_KINDS, LinesByKind, wait_until, warnings_an_hour
from collector.service import Collector, CollectorConfig
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

DROP_EVERY_S = 10.0  # what stands for the field's link: dropped every 10 s
SCALE = 5.0  # (paho's first reconnection comes 1 s after a drop)
DROPS = 20


#: What the collector says of its broker link.
KINDS = (("subscribed to", lambda message: message.startswith("subscribed to ")), *OUTAGE_KINDS)


def run() -> LinesByKind:
    """The collector's lines counted by kind over ``DROPS`` drops."""
    broker = MosquittoBroker()
    broker.start()
    counting = LinesByKind(KINDS)
    loggers = [logging.getLogger("collector"), logging.getLogger("paho")]
    kept = [(log.level, log.propagate) for log in loggers]
    for log in loggers:
        log.addHandler(counting)
        log.setLevel(logging.INFO)
        log.propagate = False  # counted, not printed
    try:
        with tempfile.TemporaryDirectory() as folder, CutProxy(broker.port, name="flapping") as proxy:
            ready = Path(folder) / "ready"
            endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{proxy.port}")
            config = CollectorConfig(
                "postgresql://127.0.0.1:1/none",
                endpoint,
                client_id="flapping-collector",
                ready_file=ready,
                database_check_s=3600.0,
            )
            collector = Collector(config)
            collector.start()
            try:
                for _ in range(DROPS):
                    wait_until(ready.exists, 10)  # subscribed
                    time.sleep(DROP_EVERY_S / SCALE)
                    proxy.drop()
                    wait_until(lambda: not ready.exists(), 10)
                wait_until(ready.exists, 10)
            finally:
                collector.stop()
    finally:
        for log, (level, propagate) in zip(loggers, kept, strict=True):
            log.removeHandler(counting)
            log.setLevel(level)
            log.propagate = propagate
        broker.stop()
    return counting


def main() -> None:
    counted = run()
    print(
        f"collector's broker link dropped every {DROP_EVERY_S:g} s (time scaled 1:{SCALE:g}): {DROPS} drops, "
        f"{DROPS * DROP_EVERY_S / 60:.1f} min of such a link"
    )
    for kind, lines in sorted(counted.kinds.items()):
        print(f"  {kind:<20} {lines:4d} lines, {counted.warning_or_above[kind]:4d} at WARNING or above")
    hourly = warnings_an_hour(counted.warning_or_above, DROPS, DROP_EVERY_S, {"still unavailable"})
    print(f"at WARNING or above, an hour of such a link: ~{hourly} lines")


if __name__ == "__main__":
    main()
