"""``aquami collector run --mqtt-keepalive`` (``AQUAMI_MQTT_KEEPALIVE``): how soon a dead broker link is found.

The collector's keepalive was 30 s, fixed: a half-open link to the broker (a NAT or a modem that
forgot the connection, nothing closed) went unnoticed for about 60 s, the broker queuing meanwhile.
Now it is an option, 30 s by default, 1 to 65535 (MQTT's two bytes; 0 would turn it off).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from aquami.mqtt import MqttEndpoint
from collector.service import CollectorConfig
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

KEEPALIVE_S = 2
_RUN = ["collector", "run", "--database-url", "postgresql://127.0.0.1:1/x", "--mqtt-url", "mqtt://127.0.0.1:1"]
#: a ready file that cannot be: were the keepalive not checked first, the command would stop on it
#: (exit 1) rather than wait for the database that is not there
_NO_FOLDER = ["--ready-file", "/nonexistent-aquami-folder/ready"]


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env=env, terminal_width=400)
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "greater than or equal to 1"),
        ("-5", "greater than or equal to 1"),
        ("65536", "less than or equal to 65535"),
        ("abc", "a valid integer"),
        ("1.5", "a valid integer"),
    ],
)
def test_a_keepalive_out_of_mqtts_range_is_refused_naming_the_option(value: str, says: str) -> None:
    """Refused before the database or the broker is tried (neither is there): exit 2, one message."""
    by_option = [*_RUN, *_NO_FOLDER, "--mqtt-keepalive", value]
    for args, env in ((by_option, None), ([*_RUN, *_NO_FOLDER], {"AQUAMI_MQTT_KEEPALIVE": value})):
        code, said = _invoke(args, env)
        assert code == 2, said
        assert "Invalid value for '--mqtt-keepalive'" in said and says in said, said
        assert "Traceback" not in said


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_the_config_takes_exactly_mqtts_keepalives(seconds: int) -> None:
    from collector.service import MQTT_KEEPALIVE_MAX_S, MQTT_KEEPALIVE_MIN_S

    endpoint = MqttEndpoint.parse("mqtt://127.0.0.1:1")
    if MQTT_KEEPALIVE_MIN_S <= seconds <= MQTT_KEEPALIVE_MAX_S:
        assert CollectorConfig("postgresql://x", endpoint, mqtt_keepalive_s=seconds).mqtt_keepalive_s == seconds
    else:
        with pytest.raises(ValueError, match=f"MQTT keepalive {seconds} s: give 1 to 65535"):
            CollectorConfig("postgresql://x", endpoint, mqtt_keepalive_s=seconds)


def test_the_default_keepalive_is_unchanged() -> None:
    assert CollectorConfig("postgresql://x", MqttEndpoint.parse("mqtt://127.0.0.1:1")).mqtt_keepalive_s == 30


def _wait(condition: object, timeout: float, what: str, process: subprocess.Popen[bytes], log: Path) -> float:
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert process.poll() is None, f"the collector exited {process.returncode}:\n{log.read_text()}"
        assert time.monotonic() - start < timeout, f"no {what} within {timeout} s:\n{log.read_text()}"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.services
def test_a_small_keepalive_finds_a_black_holed_broker_link_within_two(
    tmp_path: Path, migrated_database_url: str, mosquitto: MosquittoBroker
) -> None:
    """The link to the broker goes dead (nothing forwarded, nothing closed): with a 2 s keepalive the
    collector gives it up within about 4 s (a PINGREQ after 2 s of silence, no PINGRESP in 2 s
    more), where the fixed 30 s took about 60 s; and it is back once the link is."""
    ready, log = tmp_path / "ready", tmp_path / "collector.log"
    with CutProxy(mosquitto.port, name="collector-link") as link:
        env = {**os.environ, "AQUAMI_DATABASE_URL": migrated_database_url}
        command = [sys.executable, "-m", "aquami", *_RUN[:2], "--mqtt-url", f"mqtt://127.0.0.1:{link.port}"]
        command += ["--mqtt-keepalive", str(KEEPALIVE_S), "--client-id", f"ka-{uuid.uuid4().hex[:8]}"]
        command += ["--ready-file", str(ready), "--detect-every", "0", "--vee-every", "0"]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(ready.exists, 60, "subscription", process, log)
            time.sleep(0.5)  # the subscription's traffic over: from here the link is idle
            link.black_hole()
            noticed = _wait(lambda: not ready.exists(), 6 * KEEPALIVE_S, "dead link noticed", process, log)
            link.restore(stale=True)  # the dead connection stays dead; a new one gets through
            _wait(ready.exists, 60, "subscription again", process, log)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    said = log.read_text()
    assert "connection lost" in said, said
    # paho: a PINGREQ after one keepalive, given up after two; its network loop wakes every second
    assert noticed <= 2 * KEEPALIVE_S + 2, (noticed, said)
