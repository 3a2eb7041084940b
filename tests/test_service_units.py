"""The example systemd units (gateway/examples/aquami-gateway.service, collector/examples/aquami-
collector.service and aquami-server.service) checked as far as they can be here, without systemd.

- Each ``ExecStart`` is an ``aquami`` command line the CLI takes: parsed by the CLI itself (every
  option and value checked, the settings from the example ``EnvironmentFile`` in the environment, as
  systemd gives them; the gateway's configuration path replaced by the example it is installed from).
- Each program, started as its unit starts it, stops on the unit's ``KillSignal`` by itself (exit 0,
  not killed by the signal) within the unit's ``TimeoutStopSec`` (after which systemd kills it), the
  gateway with no broker to deliver to (its drain waiting its whole timeout).
- ``TimeoutStopSec`` covers the waits the program's stop may take by default.
- ``RestartPreventExitStatus`` lists exactly the exit codes of a configuration refused.

Before, the README had no unit: a field box ran the gateway however its installer guessed (no
restart, no ``dialout``, a stop timeout shorter than the gateway's drain).
"""

from __future__ import annotations

import configparser
import inspect
import os
import shlex
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from aquami.cli import app
from aquami.exit_codes import FAILED, NOT_RESTARTED
from aquami.ports import free_port
from collector.schedule import PeriodicJob
from gateway.service import Gateway
from tests.gateway.helpers import bus_config_text
from tests.gateway.test_poll_log import AQUAMI

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_UNIT = ROOT / "gateway" / "examples" / "aquami-gateway.service"
COLLECTOR_UNIT = ROOT / "collector" / "examples" / "aquami-collector.service"
SERVER_UNIT = ROOT / "server" / "examples" / "aquami-server.service"
UNITS = [GATEWAY_UNIT, COLLECTOR_UNIT, SERVER_UNIT]
ENV_FILE = ROOT / "collector" / "examples" / "aquami.env"
#: where the README installs the example configuration; the example itself is parsed in its place
INSTALLED = {"/etc/aquami/gateway.toml": str(ROOT / "gateway" / "examples" / "gateway.toml")}

# The fixed waits of a stop, beside the defaults read from the code: gateway/publisher.py's stop joins
# the MQTT thread for up to 10 s; collector/service.py's stop joins its writer and its parser for up
# to 10 s each.
PUBLISHER_JOIN_S = 10.0
COLLECTOR_JOINS_S = 20.0


def _unit(path: Path) -> configparser.ConfigParser:
    """The unit's sections and settings (a setting given twice is refused: none of ours are)."""
    unit = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(path.read_text())
    return unit


def _environment(unit: configparser.ConfigParser) -> dict[str, str]:
    """The example ``EnvironmentFile``'s settings, for a unit that names /etc/aquami/aquami.env."""
    named = unit["Service"].get("EnvironmentFile")
    if named is None:
        return {}
    assert named == "/etc/aquami/aquami.env", named  # the README installs collector/examples/aquami.env there
    settings = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def _stop_timeout(unit: configparser.ConfigParser) -> float:
    return float(unit["Service"]["TimeoutStopSec"])


def _kill_signal(unit: configparser.ConfigParser) -> signal.Signals:
    return signal.Signals[unit["Service"]["KillSignal"]]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_a_unit_s_exec_start_is_an_aquami_command_the_cli_takes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = _unit(path)
    program, *args = shlex.split(unit["Service"]["ExecStart"])
    assert Path(program).is_absolute() and Path(program).name == "aquami", program
    for name, value in _environment(unit).items():
        monkeypatch.setenv(name, value)
    for name in ("AQUAMI_DATABASE_URL", "AQUAMI_MQTT_URL", "AQUAMI_HOST", "AQUAMI_PORT"):
        if name not in _environment(unit):
            monkeypatch.delenv(name, raising=False)  # the test machine's own: not the unit's
    command: Any = get_command(app)
    words = [INSTALLED.get(arg, arg) for arg in args]
    while hasattr(command, "commands"):  # a group: down to the sub-command the unit runs
        name = words.pop(0)
        assert name in command.commands, f"{path.name}: no command {name!r}"
        command = command.commands[name]
    context = command.make_context(command.name, words)  # every option and value checked, as a run does
    assert context.params, context
    if unit["Service"].get("EnvironmentFile"):
        assert context.params["database_url"] == _environment(unit)["AQUAMI_DATABASE_URL"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_a_unit_restarts_its_program_and_runs_it_as_aquami(path: Path) -> None:
    service = _unit(path)["Service"]
    assert service["Restart"] == "on-failure"  # the programs exit 1 for their supervisor to start them again
    assert service["User"] == "aquami" and service["Group"] == "aquami"
    assert _kill_signal(_unit(path)) == signal.SIGTERM


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_a_unit_does_not_restart_its_program_on_a_configuration_it_refuses(path: Path) -> None:
    """Exactly the codes the programs exit with for a configuration they refuse (aquami/exit_codes.py,
    tests/test_service_exit_codes.py): before, none, and a file refused was started again every 10 s
    for ever, the unit "activating (auto-restart)", never "failed"."""
    listed = _unit(path)["Service"].get("RestartPreventExitStatus", "")
    codes = [int(code) for code in listed.split()]  # (systemd takes signal names too: none of ours)
    assert sorted(codes) == sorted(NOT_RESTARTED) and len(set(codes)) == len(codes), listed
    assert FAILED not in codes  # what may pass (a broker, a database, a card away) is started again


def test_the_gateway_s_unit_has_the_serial_ports_and_the_spool_s_folder() -> None:
    unit = _unit(GATEWAY_UNIT)
    assert unit["Service"]["SupplementaryGroups"] == "dialout"
    assert unit["Service"]["ReadWritePaths"] == "/mnt/sd/aquami"  # the only place it writes: its spool
    assert unit["Unit"]["RequiresMountsFor"] == "/mnt/sd/aquami"


def test_each_unit_s_stop_timeout_covers_its_program_s_stop() -> None:
    drain = inspect.signature(Gateway.run).parameters["drain_timeout"].default
    assert _stop_timeout(_unit(GATEWAY_UNIT)) >= 2 * (drain + PUBLISHER_JOIN_S)  # and the buses' closing
    job_stop = inspect.signature(PeriodicJob.stop).parameters["timeout"].default  # detection's, VEE's
    assert _stop_timeout(_unit(COLLECTOR_UNIT)) >= 2 * job_stop + COLLECTOR_JOINS_S


def _stops_on_its_signal(
    unit: configparser.ConfigParser,
    argv: list[str],
    env: dict[str, str],
    log: Path,
    running: Callable[[str], bool],
    clean: int = 0,
) -> str:
    """Start ``argv`` as the unit would, wait until it is ``running`` (said of its log), send the
    unit's ``KillSignal``: it must exit ``clean`` (0: stopped by itself, not killed by the signal)
    within ``TimeoutStopSec``. Its log."""
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out, env={**os.environ, **env})
        try:
            deadline = time.monotonic() + 60
            while not running(log.read_text()):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            process.send_signal(_kill_signal(unit))
            code = process.wait(timeout=_stop_timeout(unit))  # (then systemd would have killed it)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == clean, (code, log.read_text())
    return log.read_text()


@pytest.mark.services
def test_the_gateway_stops_on_its_unit_s_signal_in_time(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    bus = {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": free_port(), "poll_interval_s": 1.0}
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none there: the drain at stop waits its whole timeout
    meters = [{"meter_id": "WM-1", "unit_id": 1}]
    config.write_text(bus_config_text(broker, tmp_path / "s.sqlite", bus, meters, gateway_id="gw-unit"))
    unit = _unit(GATEWAY_UNIT)
    _, *args = shlex.split(unit["Service"]["ExecStart"])
    argv = [AQUAMI, *[str(config) if arg in INSTALLED else arg for arg in args]]
    log = _stops_on_its_signal(unit, argv, {}, tmp_path / "gateway.log", lambda text: "WM-1 on tcp-1: failed" in text)
    assert 'event gateway_stopped: reason="SIGTERM"' in log, log


@pytest.mark.services
def test_the_collector_stops_on_its_unit_s_signal_in_time(
    tmp_path: Path, migrated_database_url: str, mosquitto
) -> None:
    unit = _unit(COLLECTOR_UNIT)
    _, *args = shlex.split(unit["Service"]["ExecStart"])
    env = {**_environment(unit), "AQUAMI_DATABASE_URL": migrated_database_url, "AQUAMI_MQTT_URL": mosquitto.url}
    log = _stops_on_its_signal(
        unit, [AQUAMI, *args], env, tmp_path / "collector.log", lambda text: "subscribed to" in text
    )
    assert "Traceback" not in log, log


@pytest.mark.services
def test_the_server_stops_on_its_unit_s_signal_in_time(tmp_path: Path, migrated_database_url: str) -> None:
    unit = _unit(SERVER_UNIT)
    _, *args = shlex.split(unit["Service"]["ExecStart"])
    port = free_port()
    env = {**_environment(unit), "AQUAMI_DATABASE_URL": migrated_database_url, "AQUAMI_PORT": str(port)}

    def serving(_: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    # uvicorn stops on SIGTERM (no new connections, the requests under way answered, the app shut
    # down), then raises the signal again to end the process: killed by SIGTERM, which systemd counts
    # as a clean stop (SuccessExitStatus), so Restart=on-failure leaves it stopped
    log = _stops_on_its_signal(unit, [AQUAMI, *args], env, tmp_path / "server.log", serving, clean=-signal.SIGTERM)
    assert "Application shutdown complete." in log and "Finished server process" in log, log
    assert "Traceback" not in log, log
    assert not serving(""), log  # it no longer listens
