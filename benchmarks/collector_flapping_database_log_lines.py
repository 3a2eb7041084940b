"""The collector's log lines for a database link that is cut again and again while it is idle.

A proxy or firewall that ends connections gives the writer's look a failure, then a new connection
that answers, then a failure…: the collector's database is one outage (:class:`aquami.outage.Outage`,
said at its first failure, then every 5 minutes, and back once it has answered 90 s without a
failure, as its broker link: ``benchmarks/collector_flapping_broker_log_lines.py``). Run as the
collector was before (``database_settle_s`` 0: back said at its first answer) and as it is.

Time is scaled: the link (a real TimescaleDB behind a TCP proxy that cuts, with a RST, every open
connection) is cut every ``DROP_EVERY_S / SCALE`` seconds, ``--drops`` times, the writer idle and
looking at its database every second (``--database-check 1``); the lines of ``collector.service`` are
counted by kind. The link never stays up the 90 s that would end the outage, scaled or not. A line said
at every drop comes ``3600 / DROP_EVERY_S`` times an hour of such a link (360 at 10 s); the reminders,
every 5 minutes of real time, do not scale: 12 an hour come beside the counts here.

    .venv/bin/python -m benchmarks.collector_flapping_database_log_lines [--drops 20]

(TimescaleDB as for the tests, AQUAMI_TEST_DATABASE_URL or ``scripts/timescaledb-up``; Mosquitto:
``scripts/test-deps``.)
"""

from __future__ import annotations

import argparse
import logging
import time

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aquami.mqtt import MqttEndpoint
from benchmarks.log_kinds import OUTAGE_KINDS, LinesByKind, warnings_an_hour
from collector.service import Collector, CollectorConfig
from tests.services import LOOPBACK, MosquittoBroker, admin_url, migrated_database
from tests.tcp_cut_proxy import CutProxy

DROP_EVERY_S = 10.0  # what stands for the field's link: cut every 10 s
SCALE = 2.5  # 4 s: a failed look (within the 1 s check) and the next on a new connection fit
CHECK_S = 1.0


def run(database_url: str, broker: MosquittoBroker, drops: int, settle_s: float | None) -> LinesByKind:
    """The collector's lines counted by kind over ``drops`` cuts; ``settle_s`` None: the default."""
    counting = LinesByKind(OUTAGE_KINDS)
    log = logging.getLogger("collector.service")
    kept = log.level, log.propagate
    log.addHandler(counting)
    log.setLevel(logging.INFO)
    log.propagate = False  # counted, not printed
    params = conninfo_to_dict(database_url)
    try:
        with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", LOOPBACK)), name="db") as link:
            settle = {} if settle_s is None else {"database_settle_s": settle_s}
            config = CollectorConfig(
                make_conninfo(database_url, host=LOOPBACK, port=link.port),
                MqttEndpoint.parse(broker.url),
                client_id="flapping-database",
                database_check_s=CHECK_S,
                **settle,  # type: ignore[arg-type]
            )
            collector = Collector(config)
            collector.start()
            try:
                time.sleep(2 * CHECK_S)  # its first look answered
                for _ in range(drops):
                    link.drop()
                    time.sleep(DROP_EVERY_S / SCALE)
            finally:
                collector.stop()
    finally:
        log.removeHandler(counting)
        log.setLevel(kept[0])
        log.propagate = kept[1]
    return counting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drops", type=int, default=20)
    args = parser.parse_args()
    broker = MosquittoBroker()
    broker.start()
    try:
        with migrated_database(admin_url()) as url:
            print(
                f"collector's database link cut every {DROP_EVERY_S:g} s (time scaled 1:{SCALE:g}): "
                f"{args.drops} drops, {args.drops * DROP_EVERY_S / 60:.1f} min of such a link"
            )
            for name, settle_s in (("before (back said at its first answer)", 0.0), ("now (default settle)", None)):
                counted = run(url, broker, args.drops, settle_s)
                print(f"{name}:")
                for kind, lines in sorted(counted.kinds.items()):
                    print(f"  {kind:<20} {lines:4d} lines, {counted.warning_or_above[kind]:4d} at WARNING or above")
                hourly = warnings_an_hour(counted.warning_or_above, args.drops, DROP_EVERY_S, {"still unavailable"})
                print(f"  at WARNING or above, an hour of such a link: ~{hourly} lines")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
