"""``aquami server run`` in a subprocess, for what only a real HTTP server shows (its sockets, its log)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.services import free_port


@contextmanager
def running_server(database_url: str, *extra: str) -> Iterator[int]:
    """The server's port, once it answers ``/health``; the server is stopped after."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("aquami")), "server", "run", "--port", str(port), *extra]
    env = {**os.environ, "AQUAMI_DATABASE_URL": database_url}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
