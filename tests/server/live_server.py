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
def running_server(database_url: str, *extra: str, log: list[str] | None = None) -> Iterator[int]:
    """The server's port, once it answers ``/health``; the server is stopped after.

    With ``log``, what the server wrote (its access log included) is appended to it once the server
    has stopped. The output waits in a pipe until then, so keep such a test's requests few (a pipe
    holds 64 KiB)."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("aquami")), "server", "run", "--port", str(port), *extra]
    env = {**os.environ, "AQUAMI_DATABASE_URL": database_url}
    output = subprocess.DEVNULL if log is None else subprocess.PIPE
    server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
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
        written, _ = server.communicate(timeout=30)
        if log is not None:
            log.append(written)
