"""What the server says and answers around a database outage: its log lines per minute of outage,
how soon after the database is back requests are served, and a database restart's first request.

The database goes away the way tests/server/test_database_away.py has it: a TCP proxy in front of
it closes (its port refuses, the pool's connections are cut) and opens again on the same port; a
restart is the proxy cutting every open connection while new ones work. The app runs in this
process (the same pool, waits and log records as ``aquami server run``), its log at INFO as the
server's (aquami.logging_setup), counted by logger and level (the test client's own, httpx's, left out).

* ``--outage`` seconds away (60), a care desk asking ``GET /meters`` every ``--every`` s (1):
  lines logged from the first failure to the database's return, per minute, WARNING and above;
* ``--returns`` outages of 3 to 15 s (seeded), requests every 0.1 s: when the first 200 came after
  each return, and how many requests started after the return were answered 503;
* a restart with ``--idle`` connections idle in the pool: the first request's answer and time;
* the database gone, the pool's connections cut: the first request's answer and time, and the next's
  (``--cuts`` times).

    python -m benchmarks.database_outage_log_and_return
    python -m benchmarks.database_outage_log_and_return --outage 20 --returns 3
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from collections import Counter

import psycopg
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.app import create_app
from server.auth import create_api_key
from tests.services import LOOPBACK, admin_url, migrated_database
from tests.tcp_cut_proxy import CutProxy


class Lines(logging.Handler):
    """Every record logged, as (logger, level name)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.said: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("httpx"):  # the test client's own lines, not the server's
            return
        self.said.append((record.name, record.levelname, record.getMessage().splitlines()[0][:110]))


class Behind:
    """The database behind a proxy that closes and opens again on its port."""

    def __init__(self, url: str) -> None:
        target = conninfo_to_dict(url)
        self.target = (int(str(target.get("port", 5432))), str(target.get("host", LOOPBACK)))
        self.proxy = CutProxy(*self.target).start()
        self.url = make_conninfo(url, host=LOOPBACK, port=str(self.proxy.port))

    def go_away(self) -> None:
        self.proxy.close()

    def come_back(self) -> None:
        self.proxy = CutProxy(*self.target, port=self.proxy.port).start()


def _log_lines(client: TestClient, db: Behind, bearer: dict[str, str], outage_s: float, every_s: float) -> None:
    lines = Lines()
    logging.getLogger().addHandler(lines)
    try:
        db.go_away()
        away = time.monotonic()
        while time.monotonic() - away < outage_s:
            client.get("/meters", headers=bearer)
            time.sleep(every_s)
        during = list(lines.said)
        db.come_back()
        while client.get("/meters", headers=bearer).status_code != 200:
            time.sleep(0.1)
        time.sleep(1)
        after = lines.said[len(during) :]
    finally:
        logging.getLogger().removeHandler(lines)
    warnings = [line for line in during if line[1] in ("WARNING", "ERROR", "CRITICAL")]
    per_minute = 60 / outage_s
    print(
        f"{outage_s:g} s away, a request every {every_s:g} s: {len(warnings) * per_minute:.0f} WARNING lines a minute, "
        f"{len(during) * per_minute:.0f} lines of any level a minute; after its return {len(after)} lines"
    )
    for (name, level), count in sorted(Counter((n, lv) for n, lv, _ in during).items()):
        print(f"  {count:5d} {level:8s} {name}")
    for name, level, text in [*during[:3], *after[:3]]:
        print(f"  e.g. {level} {name}: {text}")


def _returns(client: TestClient, db: Behind, bearer: dict[str, str], returns: int, seed: int) -> None:
    chance = random.Random(seed)
    firsts, refused_after = [], []
    for _ in range(returns):
        away_s = chance.uniform(3, 15)
        db.go_away()
        away = time.monotonic()
        while time.monotonic() - away < away_s:
            client.get("/meters", headers=bearer)
            time.sleep(0.1)
        db.come_back()
        back = time.monotonic()
        refused = 0
        while True:
            status = client.get("/meters", headers=bearer).status_code
            if status == 200:
                break
            refused += 1
            time.sleep(0.1)
        firsts.append(time.monotonic() - back)
        refused_after.append(refused)
        print(f"  away {away_s:4.1f} s: first 200 {firsts[-1]:.2f} s after the return, {refused} requests 503 after it")
        time.sleep(1)
    print(
        f"{returns} returns: the first 200 came {statistics.median(firsts):.2f} s (median), {max(firsts):.2f} s "
        f"(most) after the database was back; {sum(refused_after)} requests started after a return answered 503"
    )


def _restart(client: TestClient, db: Behind, bearer: dict[str, str], idle: int) -> None:
    pool = client.app.state.pool  # type: ignore[attr-defined]
    held = [pool.getconn() for _ in range(idle)]
    for conn in held:
        pool.putconn(conn)
    time.sleep(0.5)
    db.proxy.drop()  # every open connection cut; the database takes new ones at once
    started = time.monotonic()
    status = client.get("/meters", headers=bearer).status_code
    took = time.monotonic() - started
    print(f"a restart with {idle} connections idle in the pool: the first request {status} in {took:.2f} s")


def _first_after_a_cut(client: TestClient, db: Behind, bearer: dict[str, str], cuts: int) -> None:
    firsts, nexts = [], []
    for _ in range(cuts):
        assert client.get("/meters", headers=bearer).status_code == 200
        db.go_away()  # the pool's connections cut, new ones refused
        answers = []
        for _ in range(2):
            started = time.monotonic()
            status = client.get("/meters", headers=bearer).status_code
            answers.append((status, time.monotonic() - started))
        (first, first_s), (then, then_s) = answers
        firsts.append(first_s)
        nexts.append(then_s)
        print(f"  the database gone: the first request {first} in {first_s:.2f} s, the next {then} in {then_s:.2f} s")
        db.come_back()
        while client.get("/meters", headers=bearer).status_code != 200:
            time.sleep(0.1)
        time.sleep(0.5)
    print(
        f"{cuts} cuts: the first request after one answered in {statistics.median(firsts):.2f} s (median), "
        f"{max(firsts):.2f} s (most); the next in {statistics.median(nexts):.2f} s (median)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds away for the log count")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between requests meanwhile")
    parser.add_argument("--returns", type=int, default=8, help="outages whose return is timed")
    parser.add_argument("--idle", type=int, default=6, help="connections idle in the pool at a restart")
    parser.add_argument("--cuts", type=int, default=3, help="times the database goes, the first request timed")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.INFO)  # the server's level (aquami.logging_setup.log_config)
    with migrated_database(admin_url()) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            bearer = {"Authorization": f"Bearer {create_api_key(conn, 'bench', ['reader'])}"}
        db = Behind(url)
        try:
            with TestClient(create_app(db.url)) as client:
                assert client.get("/meters", headers=bearer).status_code == 200
                _restart(client, db, bearer, args.idle)
                time.sleep(1)
                _first_after_a_cut(client, db, bearer, args.cuts)
                time.sleep(1)
                _returns(client, db, bearer, args.returns, args.seed)
                _log_lines(client, db, bearer, args.outage, args.every)
        finally:
            db.proxy.close()


if __name__ == "__main__":
    main()
