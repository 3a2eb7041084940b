"""The exit codes of ``gateway run``, ``collector run`` and ``server run``, as their units read them.

A configuration the program refuses exits 2 (click's usage error: an option, a file not there) or 78
(``EX_CONFIG``: the gateway's file refused, a database URL that is none, a privileged port), which
each unit's ``RestartPreventExitStatus=`` lists (tests/test_service_units.py), so systemd shows it
"failed". Before, the gateway's file refused and a malformed ``AQUAMI_DATABASE_URL`` exited 1, as
a broker away does: started again every 10 s for ever, the same refusal each time. What may pass
(the spool's card not there yet, a port another program holds, a database away) still exits 1 or
keeps running. Each run is the real command in its own process; its words are those it said before
(the one-shot command that says the same refusal, which exits 1 as before, is compared with it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aquami.exit_codes import CONFIG, FAILED, USAGE
from aquami.ports import free_port
from tests.gateway.helpers import bus_config_text

AQUAMI = str(Path(sys.executable).with_name("aquami"))
#: a database URL libpq cannot read (its colon missing)
MALFORMED_URL = "postgresql//aquami:S3cretDB@127.0.0.1:5432/aquami"


def _aquami(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``aquami ARGS`` run to its end, with ``env`` added to this environment (as a unit's
    ``EnvironmentFile``), run by ``prefix`` when given."""
    settings = {k: v for k, v in os.environ.items() if not k.startswith("AQUAMI_")}  # the machine's own: not ours
    command, environment = [*prefix, AQUAMI, *args], {**settings, **(env or {})}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)


def _gateway_file(tmp_path: Path, spool: Path, extra_top: str = "") -> Path:
    config = tmp_path / "gateway.toml"
    bus = {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": free_port()}
    meters = [{"meter_id": "WM-1", "unit_id": 1}]
    broker = f"mqtt://127.0.0.1:{free_port()}"
    config.write_text(bus_config_text(broker, spool, bus, meters, gateway_id="gw-exit", extra_top=extra_top))
    return config


# configuration: not restarted ---------------------------------------------------------------------


def test_a_gateway_file_refused_exits_ex_config_in_check_s_words(tmp_path: Path) -> None:
    config = _gateway_file(tmp_path, tmp_path / "s.sqlite", extra_top="colour = 'blue'")
    checked = _aquami("gateway", "check", str(config))
    run = _aquami("gateway", "run", str(config))
    assert checked.returncode == 1, checked.stderr  # a one-shot check: as it has always said it
    assert run.returncode == CONFIG, run.stderr
    assert run.stderr == checked.stderr and run.stderr.startswith(f"error: {config}:"), run.stderr
    assert "colour" in run.stderr and len(run.stderr.splitlines()) == 1, run.stderr
    assert not (tmp_path / "s.sqlite").exists()  # refused before the spool is opened


@pytest.mark.parametrize(
    "args",
    [["gateway", "run", "/nowhere/gateway.toml"], ["gateway", "run", "--colour", "GATEWAY_TOML"]],
    ids=["config-not-there", "unknown-option"],
)
def test_a_gateway_command_line_refused_exits_usage(tmp_path: Path, args: list[str]) -> None:
    config = _gateway_file(tmp_path, tmp_path / "s.sqlite")
    run = _aquami(*[str(config) if arg == "GATEWAY_TOML" else arg for arg in args])
    assert run.returncode == USAGE, run.stderr
    assert "Error" in run.stderr and ("does not exist" in run.stderr or "No such option" in run.stderr), run.stderr


@pytest.mark.parametrize(
    ("service", "one_shot"),
    [
        (["collector", "run", "--mqtt-url", "mqtt://127.0.0.1:1"], ["collector", "migrate"]),
        (["server", "run", "--port", "0"], ["server", "list-keys"]),
    ],
    ids=["collector", "server"],
)
def test_a_malformed_database_url_exits_ex_config_from_a_service(service: list[str], one_shot: list[str]) -> None:
    env = {"AQUAMI_DATABASE_URL": MALFORMED_URL}
    run = _aquami(*service, env=env)
    said = _aquami(*one_shot, env=env)
    assert said.returncode == FAILED, said.stderr  # the one-shot commands exit 1, as before
    assert run.returncode == CONFIG, run.stderr
    assert run.stderr == said.stderr and run.stderr.startswith("error: database: URL "), run.stderr
    assert "S3cretDB" not in run.stderr


@pytest.mark.parametrize(
    ("args", "env", "option"),
    [
        (["collector", "run"], {"AQUAMI_MQTT_URL": "http://127.0.0.1:1883"}, "--mqtt-url"),
        (["collector", "run", "--mqtt-url", "mqtt://127.0.0.1:1"], {"AQUAMI_MQTT_KEEPALIVE": "0"}, "--mqtt-keepalive"),
        (["server", "run"], {"AQUAMI_PORT": "99999"}, "--port"),
    ],
    ids=["collector-mqtt-url", "collector-keepalive", "server-port"],
)
def test_an_option_refused_exits_usage(args: list[str], env: dict[str, str], option: str) -> None:
    run = _aquami(*args, env={"AQUAMI_DATABASE_URL": "postgresql://aquami@127.0.0.1:1/aquami", **env})
    assert run.returncode == USAGE, run.stderr
    assert option in run.stderr, run.stderr


#: A network namespace of its own, its loopback up: there ports below 1024 are privileged again,
#: whatever the machine's ``ip_unprivileged_port_start`` (0 in a Docker container, which opens every
#: port to every user): each namespace starts with 1024.
IN_OWN_NETWORK = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")


def _privileged_port() -> tuple[int, tuple[str, ...]]:
    """A port only a privileged user may listen on, and the prefix that runs a command where it is
    one: here (1023 on Linux by default), or in a namespace of its own where no port is privileged
    here. Before, the test skipped on such a machine."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    return (start - 1, ()) if start > 0 else (1023, IN_OWN_NETWORK)


#: Root without the privilege to listen below 1024 (util-linux's setpriv), as the unit's user ``aquami``
#: is: root keeps its files (the checkout may be in a folder only root reads), loses only that.
WITHOUT_NET_BIND = ("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service")


def test_a_privileged_port_without_the_privilege_exits_ex_config() -> None:
    port, where = _privileged_port()
    env = {"AQUAMI_DATABASE_URL": "postgresql://aquami@127.0.0.1:1/aquami", "AQUAMI_PORT": str(port)}
    run = _aquami("server", "run", env=env, prefix=(*where, *(WITHOUT_NET_BIND if os.geteuid() == 0 else ())))
    assert run.returncode == CONFIG, run.stderr
    assert run.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: a port below 1024 needs privileges this user does not have "
        "(give a port from 1024)\n"
    )


# transient: started again (exit 1), or running on --------------------------------------------------


def test_a_spool_whose_card_is_not_there_yet_exits_1(tmp_path: Path) -> None:
    config = _gateway_file(tmp_path, tmp_path / "card" / "aquami" / "gw.sqlite")  # the card's folder: absent
    run = _aquami("gateway", "run", str(config))
    assert run.returncode == FAILED, run.stderr
    assert "error: cannot open the spool" in run.stderr and "does not exist (is its storage mounted?)" in run.stderr


def test_a_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {"AQUAMI_DATABASE_URL": "postgresql://aquami@127.0.0.1:1/aquami", "AQUAMI_PORT": str(port)}
        run = _aquami("server", "run", env=env)
    assert run.returncode == FAILED, run.stderr
    assert "the port is in use" in run.stderr, run.stderr


def test_a_collector_whose_database_is_away_runs_on_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "collector.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AQUAMI_")},
        "AQUAMI_DATABASE_URL": f"postgresql://aquami@127.0.0.1:{free_port()}/aquami",  # nothing listens there
        "AQUAMI_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
    }
    with log.open("w") as out:
        collector = subprocess.Popen([AQUAMI, "collector", "run"], stdout=out, stderr=out, env=env)
        try:
            deadline = time.monotonic() + 60
            while "database unavailable" not in log.read_text():
                assert collector.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            time.sleep(6)  # past its first try again (every 5 s): still waiting, not exited
            assert collector.poll() is None, log.read_text()
            collector.send_signal(signal.SIGTERM)
            code = collector.wait(timeout=30)
        finally:
            if collector.poll() is None:
                collector.kill()
                collector.wait()
    assert code == 0, log.read_text()


@pytest.mark.parametrize(
    ("errno", "refused"), [(socket.EAI_AGAIN, False), (socket.EAI_NONAME, True), (socket.EAI_FAIL, True)]
)
def test_a_listen_host_the_resolver_cannot_answer_for_just_now_is_no_usage_error(
    monkeypatch: pytest.MonkeyPatch, errno: int, refused: bool
) -> None:
    """A server unit naming its host by a name, started at boot before the resolver answers, was
    refused as a usage error (exit 2), which its unit does not start again: down until someone
    came. A temporary failure now goes on to the bind, whose failure exits 1 and is restarted.
    (The resolver is replaced: no real one can be made to fail for a while here.)"""
    import typer

    from aquami import cli_text

    def resolver(host: str, *args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(errno, "resolver says no")

    monkeypatch.setattr(cli_text.socket, "getaddrinfo", resolver)
    check = cli_text.checked_host("--host")
    if refused:
        with pytest.raises(typer.BadParameter, match="no address this machine can listen on"):
            check("aquami-web.internal")
    else:
        assert check("aquami-web.internal") == "aquami-web.internal"
