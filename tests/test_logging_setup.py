"""Log lines carry UTC ISO 8601 time with Z, level and logger, in the gateway, the collector and the
server alike. Before, the gateway and the collector logged the host's local time with no zone
(``2026-12-05 11:41:49,736`` in New York for 16:41 UTC), and the server's lines had no time at all."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aquami.logging_setup import FORMAT, UtcFormatter
from tests.services import free_port

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (INFO|WARNING|ERROR) [\w.]+: ")


def _near_now(line: str) -> None:
    match = STAMP.match(line)
    assert match, line
    at = datetime.fromisoformat(match[1].replace("Z", "+00:00"))
    assert abs(at - datetime.now(UTC)) < timedelta(seconds=60), line


def _first_lines(
    command: list[str], env: dict[str, str], lines: int, until: Callable[[list[str]], bool] = lambda said: True
) -> list[str]:
    """What ``command`` writes to stderr (its non-blank lines) from its start until it has written
    ``lines`` and ``until(them)`` holds (60 s at most: a loaded machine starts Python slowly), and
    after it is then terminated. Read as they come, not after a fixed time that may be too short."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    lock = threading.Lock()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if line.strip():
                with lock:
                    said.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with lock:
                if len(said) >= lines and until(list(said)):
                    break
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(30)
    assert len(said) >= lines, said
    return said


def test_the_formatter_writes_utc_whatever_the_zone(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        record = logging.LogRecord("collector", logging.WARNING, __file__, 1, "database gone", None, None)
        record.created, record.msecs = datetime(2026, 12, 5, 16, 41, 49, 736000, tzinfo=UTC).timestamp(), 736.0
        assert UtcFormatter(FORMAT).format(record) == "2026-12-05T16:41:49.736Z WARNING collector: database gone"
        record.msg = "connection failed: refused\n\tIs the server running?"
        assert (
            UtcFormatter(FORMAT).format(record).endswith("collector: connection failed: refused Is the server running?")
        )
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_collector_logs_utc_in_another_zone() -> None:
    env = {**os.environ, "TZ": "Asia/Kolkata", "AQUAMI_DATABASE_URL": "postgresql://x@127.0.0.1:1/none"}
    command = [sys.executable, "-m", "aquami", "collector", "run", "--mqtt-url", "mqtt://127.0.0.1:1"]
    for line in _first_lines(command, env, 1):
        _near_now(line)


def test_the_gateway_logs_utc_in_another_zone(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'gateway_id = "gw-tz"\n[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
        f'[spool]\npath = "{tmp_path / "spool.sqlite"}"\n'
        f'[[buses]]\nname = "b1"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\nport = {free_port()}\n'
        '[[meters]]\nmeter_id = "M-1"\nbus = "b1"\nunit_id = 1\n'
    )
    env = {**os.environ, "TZ": "America/New_York"}
    for line in _first_lines([sys.executable, "-m", "aquami", "gateway", "run", str(config)], env, 1):
        _near_now(line)


def test_the_server_logs_utc_with_its_own_lines_and_uvicorn_s() -> None:
    env = {**os.environ, "TZ": "America/New_York", "AQUAMI_DATABASE_URL": "postgresql://x@127.0.0.1:1/none"}
    command = [sys.executable, "-m", "aquami", "server", "run", "--port", str(free_port())]
    said = _first_lines(  # the database said to be away at once (before, after 20 s of waiting)
        command,
        env,
        3,
        lambda said: (
            any(" WARNING server.db: database not reachable yet" in line for line in said)
            and any(" INFO uvicorn.error: Uvicorn running on " in line for line in said)
        ),
    )
    for line in said:  # each a line: psycopg_pool's message holds a newline
        _near_now(line)
    assert any(" WARNING server.db: database not reachable yet" in line for line in said), said
    assert any(" INFO uvicorn.error: Uvicorn running on " in line for line in said), said
