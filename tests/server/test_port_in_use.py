"""``aquami server run`` on a port already in use says so at once, in one line, exit 1.

Before, uvicorn bound the port only after start-up had asked the database (2 s on a database host
that does not answer), then logged ``ERROR: [Errno 98] error while attempting to bind on address
('127.0.0.1', 8000): address already in use`` among its start-up lines and exited 3, where every
other refusal of ``server run`` is one line, exit 1 (found by the operations walkthrough)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.services import LOOPBACK, accepts, free_port

AQUAMI = str(Path(sys.executable).with_name("aquami"))


def _server_run(port: int, database_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AQUAMI_DATABASE_URL": database_url}
    return subprocess.Popen(
        [AQUAMI, "server", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_port_in_use_is_said_at_once_in_one_line_exit_1() -> None:
    with socket.socket() as taken, socket.socket() as mute:
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        mute.bind((LOOPBACK, 0))
        mute.listen(1)  # a database host that takes the connection and never answers: asked, it waits
        port = taken.getsockname()[1]
        started = time.monotonic()
        server = _server_run(port, f"postgresql://aquami@{LOOPBACK}:{mute.getsockname()[1]}/aquami")
        out, err = server.communicate(timeout=60)
        took = time.monotonic() - started
    assert server.returncode == 1, (server.returncode, err)
    assert err.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(another server or program listens there: give --port or AQUAMI_PORT)"
    ], err
    assert out == ""
    # not after the database's question (2 s on a mute host): the process's own start, imports and all
    assert took < 8.0, f"said after {took:.1f} s"


def test_the_server_serves_on_the_port_it_bound_first() -> None:
    """The socket bound first is the one uvicorn serves on (/health answers with the database away)."""
    port = free_port()
    server = _server_run(port, f"postgresql://aquami@{LOOPBACK}:{free_port()}/aquami")
    try:
        started = time.monotonic()
        while not accepts(port):
            assert server.poll() is None, server.communicate()
            assert time.monotonic() - started < 60, "the server never listened"
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok", "database": "unavailable"}
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert server.returncode in (0, -15), server.returncode  # uvicorn ends by the same SIGTERM after a clean stop
