"""How long ``aquami server run`` takes to listen, and what a client sees while its database is away.

Start-up, each the median of ``--rounds`` starts of the real command (a subprocess), beside the
process's own start (``python -c "import uvicorn, server.app"``: the imports) as the baseline:

* the database present and migrated;
* a database host that is mute (the connection accepted by the kernel, never answered: a hung
  machine or a black-holing firewall): start-up waits for its connect timeout (server.db.STARTUP_WAIT_S);
* nothing listening on the database's port (refused at once).

Then, against a server whose database is away (refused), how long a keyed API request takes to be
answered 503, alone and ``--parallel`` at once (a billing pull or a care desk retrying), and how long
after the database is back (through a TCP proxy that was closed and opens again) the first 200 comes.

    python -m benchmarks.bench_server_start
    python -m benchmarks.bench_server_start --rounds 1 --parallel 4
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.auth import create_api_key
from tests.services import LOOPBACK, accepts, admin_url, free_port, migrated_database
from tests.tcp_cut_proxy import CutProxy

AQUAMI = str(Path(sys.executable).with_name("aquami"))


def _listening(database_url: str) -> tuple[subprocess.Popen[bytes], int, float]:
    """``aquami server run`` on ``database_url``, once it listens: the process, its port, seconds taken."""
    port = free_port()
    env = {**os.environ, "AQUAMI_DATABASE_URL": database_url}
    started = time.monotonic()
    server = subprocess.Popen(
        [AQUAMI, "server", "run", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not accepts(port):
        if server.poll() is not None or time.monotonic() - started > 120:
            raise SystemExit(f"the server exited {server.returncode} or never listened")
        time.sleep(0.02)
    return server, port, time.monotonic() - started


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=30)


def _seconds_to_listen(database_url: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        server, _, seconds = _listening(database_url)
        _stop(server)
        times.append(seconds)
    return statistics.median(times)


def _imports(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import uvicorn, server.app"], check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def _get(port: int, key: str, path: str = "/meters") -> tuple[int, str | None, float]:
    """A keyed ``GET``: status, Retry-After, seconds."""
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", headers={"Authorization": f"Bearer {key}"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, retry = response.status, response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        status, retry = error.code, error.headers.get("Retry-After")
    return status, retry, time.monotonic() - started


def _outage(url: str, parallel: int, outage_s: float) -> None:
    """A server on a database behind a proxy: present, then away (proxy closed), then back."""
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "bench", ["reader"])
    target = conninfo_to_dict(url)
    proxy = CutProxy(int(str(target.get("port", 5432))), str(target.get("host", LOOPBACK))).start()
    proxy_port = proxy.port
    server, port, _ = _listening(make_conninfo(url, host=LOOPBACK, port=str(proxy_port)))
    try:
        assert _get(port, key)[0] == 200
        proxy.close()  # the database away: its port refuses, the pool's connections are cut
        away = time.monotonic()
        alone = [_get(port, key) for _ in range(3)]
        with ThreadPoolExecutor(parallel) as workers:
            started = time.monotonic()
            answers = workers.map(lambda _: _get(port, key), range(parallel))
            time.sleep(0.5)
            health = _get(port, key, "/health")
            together = list(answers)
            all_answered = time.monotonic() - started
        print(
            "database away: each request answered "
            + ", ".join(f"{status} in {seconds:.2f} s" for status, _, seconds in alone)
            + f" (Retry-After {alone[0][1]}); {parallel} at once: all answered in {all_answered:.2f} s "
            f"(statuses {sorted({s for s, _, _ in together})}), GET /health meanwhile {health[0]} in {health[2]:.2f} s"
        )
        time.sleep(max(0.0, outage_s - (time.monotonic() - away)))  # the pool's reconnection backs off meanwhile
        proxy = CutProxy(int(str(target.get("port", 5432))), str(target.get("host", LOOPBACK)), port=proxy_port).start()
        back = time.monotonic()
        while _get(port, key)[0] != 200:
            if time.monotonic() - back > 300:
                raise SystemExit("the server never reached its database again")
            time.sleep(0.1)
        came = time.monotonic() - back
        print(f"database back after {outage_s:g} s away: the first 200 came {came:.2f} s after it was")
    finally:
        _stop(server)
        proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="starts of each kind (median)")
    parser.add_argument("--parallel", type=int, default=20, help="requests at once while the database is away")
    parser.add_argument("--outage", type=float, default=70.0, help="seconds the database is away")
    args = parser.parse_args()
    imports = _imports(args.rounds)
    with socket.socket() as mute, migrated_database(admin_url()) as url:
        mute.bind((LOOPBACK, 0))
        mute.listen(64)
        present = _seconds_to_listen(url, args.rounds)
        muted = _seconds_to_listen(f"postgresql://aquami@{LOOPBACK}:{mute.getsockname()[1]}/aquami", args.rounds)
        refused = _seconds_to_listen(f"postgresql://aquami@{LOOPBACK}:{free_port()}/aquami", args.rounds)
        print(
            f"listening, against the process's own imports ({imports:.2f} s): database present "
            f"{present:.2f} s ({present - imports:+.2f} s), mute {muted:.2f} s ({muted - imports:+.2f} s), "
            f"refused {refused:.2f} s ({refused - imports:+.2f} s)"
        )
        _outage(url, args.parallel, args.outage)


if __name__ == "__main__":
    main()
