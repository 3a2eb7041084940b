"""``aquami server run`` with its database away listens at once and answers as the README says.

It listened only after about 20 s: start-up waited 10 s for the pool's first connection and 10 s more
to ask the database whether it is migrated. Until then a service manager's probe (systemd, Kubernetes)
had its connection refused, which reads as "crashed"; the 503s the README promises came only after.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.auth import create_api_key
from tests.services import LOOPBACK, accepts, free_port
from tests.tcp_cut_proxy import CutProxy

#: The bound on listening with the database away: before, about 20 s by construction (two 10 s
#: waits); now the process's own start (imports), a few seconds on a loaded machine.
LISTENS_WITHIN_S = 8.0
#: With a database host that neither accepts nor refuses: before, 31 s (three 10 s waits), then
#: twice 2 s (server run's check, then the app's); now once db.STARTUP_WAIT_S (server run asks, the
#: app is handed its answer) beside the process's own start.
LISTENS_ON_A_MUTE_HOST_WITHIN_S = LISTENS_WITHIN_S + 2.0


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """Status, headers (their names in any case) and body, a 503 as a 200."""
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _listening(database_url: str) -> tuple[subprocess.Popen[bytes], int, float]:
    """``aquami server run`` on ``database_url``, once it listens: the process, its port, and the
    seconds it took. A port taken between free_port() and the server's bind (by a parallel test's
    listener picking the same one) is the harness's race, not the server's: tried again."""
    for _ in range(3):
        port = free_port()
        command = [str(Path(sys.executable).with_name("aquami")), "server", "run", "--port", str(port)]
        env = {**os.environ, "AQUAMI_DATABASE_URL": database_url}
        with tempfile.TemporaryFile() as said:  # its stderr: why it exited, if it does
            started = time.monotonic()
            server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=said)
            while not accepts(port):
                if server.poll() is not None:
                    break
                assert time.monotonic() - started < 60, "the server never listened"
                time.sleep(0.1)
            else:
                return server, port, time.monotonic() - started
            said.seek(0)
            why = said.read().decode(errors="replace")
        assert "the port is in use" in why, f"the server exited {server.returncode}: {why}"
    raise AssertionError("three free ports were taken before the server could bind them")


def test_server_run_with_its_database_away_listens_at_once_answers_503_and_serves_once_it_is_there(
    migrated_database_url: str,
) -> None:
    database_port = free_port()  # nothing listens there yet: the database is "away"
    url = make_conninfo(migrated_database_url, host=LOOPBACK, port=str(database_port))
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "prober", ["reader"])
    server, port, listened = _listening(url)
    try:
        assert listened < LISTENS_WITHIN_S, f"listening took {listened:.1f} s with the database away"

        status, headers, body = _get(port, "/meters", {"Authorization": f"Bearer {key}"})
        assert status == 503, body
        assert headers["Content-Type"] == "application/problem+json"
        assert headers["Retry-After"] == "5"
        assert json.loads(body)["title"] == "Database unavailable"
        status, _, body = _get(port, "/health")
        assert status == 200, body  # liveness: the process is fine, restarting it would not help
        assert json.loads(body) == {"status": "ok", "database": "unavailable"}

        target = conninfo_to_dict(migrated_database_url)
        with CutProxy(int(str(target.get("port", 5432))), str(target.get("host", LOOPBACK)), port=database_port):
            deadline = time.monotonic() + 60
            while (answer := _get(port, "/meters", {"Authorization": f"Bearer {key}"}))[0] == 503:
                assert time.monotonic() < deadline, "the server never reached its database"
                time.sleep(0.2)
            assert answer[0] == 200, answer[2]
            status, _, body = _get(port, "/health")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_server_run_with_a_mute_database_host_listens_within_seconds() -> None:
    """A host that takes the connection and never answers (a hung machine, a black-holing firewall
    gives the same wait): start-up's one question waits its connect_timeout, not 10 s."""
    with socket.socket() as mute:
        mute.bind((LOOPBACK, 0))
        mute.listen(16)  # accepted by the kernel, never answered
        server, port, listened = _listening(f"postgresql://aquami@{LOOPBACK}:{mute.getsockname()[1]}/aquami")
        try:
            assert listened < LISTENS_ON_A_MUTE_HOST_WITHIN_S, f"listening took {listened:.1f} s"
            status, _, body = _get(port, "/health")
            assert (status, json.loads(body)) == (200, {"status": "ok", "database": "unavailable"})
        finally:
            server.terminate()
            server.wait(timeout=30)
