"""``--ready-file`` in a folder that is missing or unwritable, and exceptions in paho's callbacks.

The collector wrote its ready file inside paho's subscription callback: a missing folder raised
there, the exception killed paho's network thread, and the collector ran on storing nothing (50
readings published, 0 stored; counters of 0 every 30 s; exit 0 at SIGTERM)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from aquami.mqtt import MqttEndpoint
from collector.ready_file import ReadyFile, ReadyFileUnusable
from collector.service import Collector, CollectorConfig
from tests.collector.test_ingest_mqtt import _collector_process, wait_for

GRANTED = ReasonCode(PacketTypes.SUBACK, identifier=1)


def _aquami(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aquami", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("where", ["missing", "read-only"])
def test_a_ready_file_that_cannot_be_written_is_one_line_and_exit_1_before_connecting(
    tmp_path: Path, where: str
) -> None:
    """Said at once, before the database or the broker is tried (neither is there)."""
    folder = tmp_path / "run"
    if where == "read-only":
        folder.mkdir(mode=0o500)
        if os.access(folder, os.W_OK) and os.geteuid() == 0:  # root writes anywhere: a file is no folder
            folder.rmdir()
            folder.write_text("not a folder\n")
    result = _aquami(
        "collector", "run", "--database-url", "postgresql://127.0.0.1:1/x", "--mqtt-url", "mqtt://127.0.0.1:1",
        "--ready-file", str(folder / "ready"), "--detect-every", "0", "--vee-every", "0",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --ready-file {folder / 'ready'}: "), lines


def test_the_folder_check_leaves_nothing_behind(tmp_path: Path) -> None:
    ReadyFile(tmp_path / "ready").check()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ReadyFileUnusable, match="there is no folder"):
        ReadyFile(tmp_path / "no" / "ready").check()


def _collector(tmp_path: Path, failures: list[str]) -> Collector:
    endpoint = MqttEndpoint.parse("mqtt://127.0.0.1:1")
    config = CollectorConfig("postgresql://127.0.0.1:1/x", endpoint, ready_file=tmp_path / "run" / "ready")
    return Collector(config, on_fatal=failures.append)


def test_a_ready_file_that_cannot_be_written_at_subscription_stops_the_collector(tmp_path: Path) -> None:
    """The folder gone since start-up: paho's callback returns, and the collector is told to stop."""
    failures: list[str] = []
    collector = _collector(tmp_path, failures)
    on_subscribe: Any = collector._client.on_subscribe  # as paho calls it
    on_subscribe(collector._client, None, 1, [GRANTED] * 4, None)  # no exception leaves it
    assert len(failures) == 1 and "could not write the ready file" in failures[0]
    assert collector.failure == failures[0]


def test_no_exception_leaves_a_paho_callback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    failures: list[str] = []
    collector = _collector(tmp_path, failures)
    nonsense: Any = object()  # no reason code: reading it raises AttributeError
    on_connect: Any = collector._client.on_connect
    on_connect(collector._client, None, None, nonsense, None)
    assert failures == ["the collector's MQTT on_connect failed (its traceback is logged above)"]
    assert "AttributeError" in caplog.text


def test_a_collector_that_cannot_write_its_ready_file_after_a_reconnect_exits_1(
    migrated_database_url: str, fresh_mosquitto: Any, tmp_path: Path
) -> None:
    """The folder removed while the collector runs, then the broker restarts: at the new
    subscription the file cannot be written. The process exits 1 (before, it ran on storing nothing)."""
    folder = tmp_path / "run"
    folder.mkdir()
    ready, log = folder / "ready", tmp_path / "collector.log"
    options = ("--ready-file", str(ready), "--detect-every", "0", "--vee-every", "0")
    client_id = f"col-{uuid.uuid4().hex[:8]}"
    process = _collector_process(migrated_database_url, fresh_mosquitto.url, client_id, *options, log=log)
    try:
        wait_for(ready.exists, 30, "the ready file")
        ready.unlink()
        folder.rmdir()
        fresh_mosquitto.restart()
        assert process.wait(60) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    said = log.read_text()
    assert "could not write the ready file" in said and "the collector stops" in said
