"""Downlink commands through the broker (read-now, reload, scan) and the ``aquami gateway scan`` CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aquami.contracts import status as status_contract
from aquami.contracts.commands import reply_errors
from aquami.contracts.reads import Reading
from aquami.ports import free_port
from gateway.config import MeterConfig, load_config, parse_config_text
from gateway.service import Gateway
from gateway.transport import PollError
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.serial_line import LineDevice, LineSettings, SerialLine
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import (
    StatelessTransport,
    Subscriber,
    bus_config_text,
    config_text,
    meters,
    running,
    toml_table,
    until,
)
from tests.gateway.test_modbus_rtu import PARITY

pytestmark = pytest.mark.services
AQUAMI = str(Path(sys.executable).with_name("aquami"))
ROOT = "aquami/v1/gw-cmd"


async def command(subscriber: Subscriber, name: str, body: dict[str, Any]) -> dict[str, Any]:
    request_id = f"{name}-{len(subscriber.messages)}"
    subscriber.client.publish(f"{ROOT}/cmd/{name}", json.dumps({**body, "request_id": request_id}), qos=1)

    def replied() -> list[dict[str, Any]]:
        return [r for r in subscriber.payloads(f"/cmd/{name}/reply") if r.get("request_id") == request_id]

    await asyncio.to_thread(subscriber.wait_for, lambda: bool(replied()), 20, f"a reply to {name}")
    return replied()[0]


async def raw_command(subscriber: Subscriber, name: str, payload: bytes) -> dict[str, Any]:
    """The reply to ``payload`` as it is (one with no request_id to match it by: the next reply)."""
    before = subscriber.count(f"/cmd/{name}/reply")
    subscriber.client.publish(f"{ROOT}/cmd/{name}", payload, qos=1)
    answered = lambda: subscriber.count(f"/cmd/{name}/reply") > before  # noqa: E731
    await asyncio.to_thread(subscriber.wait_for, answered, 20, f"a reply to {name}")
    reply: dict[str, Any] = subscriber.payloads(f"/cmd/{name}/reply")[before]
    return reply


def assert_replies_and_statuses_keep_their_schemas(subscriber: Subscriber) -> int:
    """Every command reply and ``status/health`` the subscriber received holds to its JSON Schema
    (aquami/contracts/commands.schema.json, status.schema.json); how many were checked."""
    with subscriber._lock:
        received = list(subscriber.messages)
    checked = 0
    for topic, payload in received:
        if topic.endswith("/reply"):
            name = topic.split("/")[-2]
            assert reply_errors(name, json.loads(payload)) == [], (topic, payload)
        elif topic.endswith("/status/health"):
            assert status_contract.schema_errors(json.loads(payload)) == [], payload
        else:
            continue
        checked += 1
    return checked


async def listening(subscriber: Subscriber, timeout: float = 30.0, root: str = ROOT) -> None:
    """Until the gateway answers a command: it subscribes to them once connected, and a command sent
    before the broker has its subscription is lost. Probed with one it does not know (an error reply,
    nothing done), sent again each second."""
    deadline = asyncio.get_running_loop().time() + timeout
    answered = lambda: subscriber.count("/cmd/probe/reply") > 0  # noqa: E731
    for n in itertools.count():
        subscriber.client.publish(f"{root}/cmd/probe", json.dumps({"request_id": f"probe-{n}"}), qos=1)
        await until(answered, 1.0)
        if answered() or asyncio.get_running_loop().time() > deadline:
            return


def test_read_now_reload_and_scan(tmp_path: Path, mosquitto) -> None:
    topics = [f"{ROOT}/cmd/+/reply", f"{ROOT}/reads", f"{ROOT}/status/health"]
    subscriber = Subscriber(mosquitto.url, topics, client_id="cmd-sub")
    config = tmp_path / "gw.toml"
    replies: dict[str, dict[str, Any]] = {}

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(3))
        await simulator.start()

        def write(units: list[int]) -> None:
            config.write_text(
                config_text(
                    mosquitto.url,
                    {"b": simulator.port},
                    {"b": units},
                    str(tmp_path / "s.sqlite"),
                    gateway_id="gw-cmd",
                    poll_interval_s=3600,
                    timeout_s=2.0,  # absent units are refused at once; a late answer is no "not found"
                    extra_bus="jitter = 0.0",
                )
            )

        write([1, 2])
        gateway = Gateway(load_config(config), config_path=config)
        async with running(gateway):
            await asyncio.to_thread(gateway.publisher.connected.wait, 10)
            await listening(subscriber)  # (0.5 s after connecting could be too short under load)
            replies["read"] = await command(subscriber, "read-now", {"meter_id": "WM-0002"})
            replies["unknown"] = await command(subscriber, "read-now", {"meter_id": "WM-0009"})
            write([1, 3])
            replies["reload"] = await command(subscriber, "reload", {})
            replies["read3"] = await command(subscriber, "read-now", {"meter_id": "WM-0003"})
            replies["read2"] = await command(subscriber, "read-now", {"meter_id": "WM-0002"})
            config.write_text(config.read_text().replace("unit_id = 3", 'unit_id = "3"'))
            replies["bad_reload"] = await command(subscriber, "reload", {})
            replies["still3"] = await command(subscriber, "read-now", {"meter_id": "WM-0003"})
            replies["scan"] = await command(subscriber, "scan", {"bus": "b", "first": 1, "last": 6})
            replies["nonsense"] = await command(subscriber, "reboot", {})
            replies["bad_json"] = await raw_command(subscriber, "scan", b'{"bus": "b",')
            replies["misspelt"] = await command(subscriber, "scan", {"bus": "b", "frist": 5})
            replies["string_unit"] = await command(subscriber, "scan", {"bus": "b", "first": "2"})
            replies["no_bus"] = await command(subscriber, "scan", {"last": 2})
            replies["list_id"] = await raw_command(subscriber, "reload", b'{"request_id": ["r"]}')
            pulse = {"bus": "b", "first": 1, "last": 2, "profile": "pulse_counter"}  # needs litres_per_pulse
            replies["pulse"] = await command(subscriber, "scan", pulse)
        await simulator.stop()

    try:
        asyncio.run(scenario())
        subscriber.wait_for(
            lambda: any(r["meter_id"] == "WM-0003" for b in subscriber.batches() for r in b["readings"]),
            10,
            "the read-now reading published",
        )
    finally:
        subscriber.close()
    read = replies["read"]
    assert read["ok"] is True and read["reading"]["meter_id"] == "WM-0002" and read["reading"]["volume_m3"] > 20
    assert replies["unknown"] == {
        "request_id": replies["unknown"]["request_id"],
        "ok": False,
        "error": "no meter 'WM-0009' on this gateway",
    }
    assert replies["reload"]["ok"] is True and replies["reload"]["meters"] == 2
    assert replies["read3"]["ok"] is True and replies["read2"]["ok"] is False
    bad = replies["bad_reload"]
    assert bad["ok"] is False and "meters[1].unit_id: expected integer" in bad["error"] and "gw.toml:" in bad["error"]
    assert replies["still3"]["ok"] is True  # a bad file leaves the running configuration alone
    scan = replies["scan"]
    assert scan["found"] == [1, 2, 3]
    snippet = tomllib.loads(scan["snippet"])
    assert [(m["bus"], m["unit_id"]) for m in snippet["meters"]] == [("b", 1), ("b", 2), ("b", 3)]
    assert "unknown command 'reboot'" in replies["nonsense"]["error"]
    # requests the schema refuses: one line naming the field (before: an int() error, or a scan of 1..247)
    assert replies["bad_json"]["ok"] is False and replies["bad_json"]["error"].startswith("bad payload: ")
    assert (
        replies["misspelt"]["error"]
        == "'frist': not a field of scan (its fields: bus, first, last, profile, request_id)"
    )
    assert replies["string_unit"]["error"] == "first must be an integer, not '2'"
    assert replies["no_bus"]["error"] == "bus is required (buses: b)"
    assert replies["list_id"] == {
        "request_id": None,
        "ok": False,
        "error": "request_id must be a string, an integer or null, not ['r']",
    }
    # before: ok, each unit that answered a "problem" (and a traceback in the log)
    assert replies["pulse"]["ok"] is False and replies["pulse"]["error"].startswith("profile: ")
    assert "needs parameters a scan command cannot give" in replies["pulse"]["error"]
    # every reply (the probes' too) and every health status, the last one's "offline" included
    assert assert_replies_and_statuses_keep_their_schemas(subscriber) >= len(replies) + 2
    assert subscriber.payloads("/status/health")[-1]["state"] == "offline"


def three_bus_replies(
    tmp_path: Path,
    broker_url: str,
    requests: dict[str, dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    command_name: str = "scan",
) -> tuple[dict[str, dict[str, Any]], list[logging.LogRecord]]:
    """The replies, through a broker, of a gateway with a live Modbus bus ``b`` (meter 1 of a shipped
    profile, meter 2 of an operator's own file, ``tmp_path/own.toml``), a Modbus bus ``dead`` whose
    TCP peer refuses (meter 5 on it) and an M-Bus line ``m`` whose device is not there, to the
    ``command_name`` ``requests`` (by name); and what gateway.commands logged meanwhile. Every reply
    holds to its schema."""
    caplog.set_level(logging.INFO)
    topics = [f"{ROOT}/cmd/+/reply", f"{ROOT}/status/health"]
    subscriber = Subscriber(broker_url, topics, client_id="cmd-three-buses-sub")
    shipped = Path(__file__).parents[2] / "firmware_protocols/modbus/profiles/smart_water_meter.toml"
    (tmp_path / "own.toml").write_text(shipped.read_text())
    replies: dict[str, dict[str, Any]] = {}
    logged: list[logging.LogRecord] = []

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        text = config_text(
            broker_url,
            {"b": simulator.port, "dead": free_port()},
            {"b": [1], "dead": [5]},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-cmd",
            poll_interval_s=3600,
            timeout_s=2.0,  # absent units are refused at once; a present one may be slow under load
            retries=1,
            extra_bus="jitter = 0.0",
        )
        own = {"meter_id": "WM-0002", "bus": "b", "unit_id": 2, "profile": tmp_path / "own.toml"}
        text += "\n".join(toml_table("[[meters]]", own))
        text += "\n" + "\n".join(toml_table("[[buses]]", {"name": "m", "protocol": "mbus", "device": tmp_path / "tty"}))
        config = tmp_path / "gw.toml"
        config.write_text(text + "\n")
        gateway = Gateway(load_config(config), config_path=config)
        async with running(gateway):
            await asyncio.to_thread(gateway.publisher.connected.wait, 10)
            await listening(subscriber)
            caplog.clear()
            for name, request in requests.items():
                replies[name] = await command(subscriber, command_name, request)
            logged.extend(r for r in caplog.records if r.name == "gateway.commands")
        await simulator.stop()

    try:
        asyncio.run(scenario())
        assert assert_replies_and_statuses_keep_their_schemas(subscriber) >= len(replies)
    finally:
        subscriber.close()
    return replies, logged


def test_a_scan_of_a_bus_that_fails_is_answered_why_not_as_an_internal_error(
    tmp_path: Path, mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """A Modbus bus that will not open, an M-Bus line whose device is not there. Before: "internal
    error: LineUnusable: …" / "internal error: PollError: …", logged with a traceback as a bug of
    ours. Now the PollError's own line, and one warning line each."""
    requests: dict[str, dict[str, Any]] = {"dead": {"bus": "dead", "first": 1, "last": 3}, "m": {"bus": "m"}}
    replies, logged = three_bus_replies(tmp_path, mosquitto.url, requests, caplog)
    assert replies["dead"]["ok"] is False and replies["dead"]["error"].startswith("dead: cannot open 127.0.0.1:")
    m = replies["m"]
    assert m["ok"] is False and m["error"].startswith(
        f"m: search stopped, 0 found by then: m: cannot open {tmp_path}"
    ), m
    said = [(r.levelname, r.exc_info, r.getMessage()) for r in logged]
    assert said == [("WARNING", None, f"command scan: {replies[name]['error']}") for name in ("dead", "m")], said


def test_a_read_now_that_gets_no_reading_says_why(tmp_path: Path, mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """A meter on a bus that will not open. Before: "WM-0005: no answer", the reason only in the
    gateway's log. Now the attempts and the last one's error, which says why."""
    replies, _ = three_bus_replies(tmp_path, mosquitto.url, {"dead": {"meter_id": "WM-0005"}}, caplog, "read-now")
    dead = replies["dead"]
    assert (dead["ok"], dead["meter_id"]) == (False, "WM-0005"), dead
    assert dead["error"].startswith("WM-0005: no reading after 2 attempts: dead: cannot open 127.0.0.1:"), dead
    assert dead["error"].endswith("Connection refused"), dead


def test_a_scan_command_names_only_the_gateway_s_profiles_not_a_path(
    tmp_path: Path, mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, a scan's profile could be any path: the gateway loaded a profile file from anywhere
    on its disk (ok), said another file's contents were no profile (a file there) and a missing one
    unknown (no file there). Now a shipped profile or one the configuration uses, by the path it gives."""
    own, elsewhere, secret = tmp_path / "own.toml", tmp_path / "elsewhere.toml", tmp_path / "secret.toml"
    shipped = Path(__file__).parents[2] / "firmware_protocols/modbus/profiles/smart_water_meter.toml"
    elsewhere.write_text(shipped.read_text())  # a profile, but not one the configuration names
    secret.write_text('password = "hunter2"\n')
    paths = {"elsewhere": elsewhere, "secret": secret, "missing": tmp_path / "no.toml"}
    requests: dict[str, dict[str, Any]] = {
        "own": {"bus": "b", "first": 1, "last": 3, "profile": str(own)},
        "shipped": {"bus": "b", "first": 1, "last": 3},
        **{name: {"bus": "b", "first": 1, "last": 3, "profile": str(path)} for name, path in paths.items()},
        "up": {"bus": "b", "profile": "../../../../etc/hostname"},
    }
    replies, _ = three_bus_replies(tmp_path, mosquitto.url, requests, caplog)
    # an operator's own profile, by the path the configuration gives, and a shipped one: as before
    assert (replies["own"]["ok"], replies["own"]["found"]) == (True, [1, 2])
    assert (replies["shipped"]["ok"], replies["shipped"]["found"]) == (True, [1, 2])
    allowed = f"profiles: electromagnetic_flow_meter, pulse_counter, smart_water_meter, {own}"
    for name, path in paths.items():
        assert replies[name] == {
            "request_id": replies[name]["request_id"],
            "ok": False,
            "error": f"profile: {str(path)!r} is not a profile of this gateway ({allowed})",
        }
    assert replies["up"]["error"].startswith("profile must be a profile's name (letters, digits, _ and -)")
    assert replies["up"]["error"].endswith(f"not '../../../../etc/hostname' ({allowed})")


def test_a_scan_of_an_m_bus_line_refuses_the_modbus_only_fields(
    tmp_path: Path, mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, first, last and profile sent for an M-Bus line were ignored: the whole line searched."""
    requests: dict[str, dict[str, Any]] = {
        "first": {"bus": "m", "first": 1},
        "last": {"bus": "m", "last": 9, "first": 2},
        "profile": {"bus": "m", "profile": "smart_water_meter"},
    }
    replies, _ = three_bus_replies(tmp_path, mosquitto.url, requests, caplog)
    for name, field in (("first", "first"), ("last", "first"), ("profile", "profile")):
        assert (replies[name]["ok"], replies[name]["error"]) == (
            False,
            f"{field}: applies to Modbus buses only; 'm' is an M-Bus line",
        ), replies[name]


def test_scan_command_line_writes_a_snippet_that_checks(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str]:
        simulator = ModbusTcpSimulator(meters(4, first_unit=3))  # units 3..6
        await simulator.start()
        config = tmp_path / "gw.toml"
        config.write_text(
            # absent units are refused at once (the simulator answers "no response" for them); a present
            # unit's answer must not be taken for silence where a loaded machine holds it past a short timeout
            config_text("mqtt://127.0.0.1:1", {"b": simulator.port}, {"b": []}, "s.sqlite", timeout_s=2.0, retries=0)
        )
        process = await asyncio.create_subprocess_exec(
            AQUAMI,
            "gateway",
            "scan",
            str(config),
            "--bus",
            "b",
            "--last",
            "8",
            "--output",
            str(tmp_path / "found.toml"),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        await simulator.stop()
        assert process.returncode is not None
        return process.returncode, err.decode()

    code, err = asyncio.run(scenario())
    assert code == 0, err
    assert "4 meters found on b" in err
    combined = (tmp_path / "gw.toml").read_text() + "\n" + (tmp_path / "found.toml").read_text()
    loaded = parse_config_text(combined)
    assert [m.unit_id for m in loaded.meters] == [3, 4, 5, 6]


class Line:
    """One serial line, shared by every transport opened on it: counts transactions under way."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0


class LineTransport(StatelessTransport):
    """A transport on :class:`Line`: each read is one 20 ms transaction; units above 2 are absent."""

    def __init__(self, line: Line) -> None:
        self.line = line

    async def read(self, meter: MeterConfig) -> Reading:
        self.line.active += 1
        self.line.most = max(self.line.most, self.line.active)
        try:
            await asyncio.sleep(0.02)
        finally:
            self.line.active -= 1
        if meter.unit_id > 2:
            raise PollError("no answer")
        return Reading(meter.meter_id, datetime.now(UTC), 1.0, protocol="modbus-rtu", bus="rtu", address=meter.unit_id)


def test_a_reload_during_a_scan_keeps_one_transaction_on_the_line(tmp_path: Path, monkeypatch) -> None:
    """The scan goes on with the bus as it was before the reload; the reloaded bus must not talk on
    the same line at the same time."""
    line = Line()
    monkeypatch.setattr(
        "gateway.service.make_transport",
        lambda bus, profiles, clock, on_late, identities, late_episodes: LineTransport(line),
    )
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        {"name": "rtu", "protocol": "modbus-rtu", "device": "/dev/ttyAQUAMI0", "poll_interval_s": 0.05, "retries": 0},
        [{"meter_id": "WM-1", "unit_id": 1}, {"meter_id": "WM-2", "unit_id": 2}],
        gateway_id="gw-reload",
    )
    config = parse_config_text(text)

    async def scenario() -> dict[str, Any]:
        gateway = Gateway(config)
        async with running(gateway):
            await asyncio.sleep(0.2)
            assert gateway._commands is not None
            scan = asyncio.create_task(gateway._commands.scan({"bus": "rtu", "first": 3, "last": 40}))
            await asyncio.sleep(0.1)
            await gateway.apply_config(config)
            found = await scan
            await asyncio.sleep(0.2)
        return found

    found = asyncio.run(scenario())
    assert found["found"] == []
    assert line.most == 1, f"{line.most} transactions on the line at once"


def _gateway_on_line(tmp_path: Path, monkeypatch, transport: Any) -> Gateway:
    monkeypatch.setattr(
        "gateway.service.make_transport", lambda bus, profiles, clock, on_late, identities, late_episodes: transport
    )
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        {"name": "rtu", "protocol": "modbus-rtu", "device": "/dev/ttyAQUAMI0", "poll_interval_s": 0.05, "retries": 0},
        [{"meter_id": "WM-1", "unit_id": 1}],
        gateway_id="gw-faults",
    )
    return Gateway(parse_config_text(text))


def test_a_command_that_meets_a_fault_of_ours_still_gets_a_reply(tmp_path: Path, monkeypatch) -> None:
    """A payload the handlers did not expect (a meter_id that is a list) raised a TypeError that
    ended the command's task: the sender never heard back. It is refused, and a fault that gets
    past the checks is answered as an internal error."""
    gateway = _gateway_on_line(tmp_path, monkeypatch, LineTransport(Line()))

    async def scenario() -> list[dict[str, Any]]:
        async with running(gateway):
            await asyncio.sleep(0.2)
            assert gateway._commands is not None
            await gateway._commands._run("read-now", b'{"meter_id": ["WM-1"], "request_id": "r1"}')

            async def broken(request: dict[str, Any]) -> dict[str, Any]:
                raise ZeroDivisionError("a fault in the handler")

            gateway._commands.scan = broken  # type: ignore[method-assign]
            await gateway._commands._run("scan", b'{"bus": "rtu", "request_id": "r2"}')
        return [json.loads(m.payload) for m in gateway.publisher._outbox if m.topic.endswith("/reply")]

    replies = asyncio.run(scenario())
    assert [reply_errors("read-now", replies[0]), reply_errors("scan", replies[1])] == [[], []]
    assert [(r["request_id"], r["ok"]) for r in replies] == [("r1", False), ("r2", False)]
    assert "meter_id must be a string" in replies[0]["error"]
    assert replies[1]["error"] == "internal error: ZeroDivisionError: a fault in the handler"


def test_a_bus_that_will_not_close_does_not_leave_the_gateway_without_buses_after_a_reload(
    tmp_path: Path, monkeypatch
) -> None:
    """A reload closes the running buses, then starts the new ones: a port whose close raised
    stopped the reload there, and the gateway polled nothing until restarted."""

    class Stuck(LineTransport):
        async def close(self) -> None:
            raise OSError("device or resource busy")

    gateway = _gateway_on_line(tmp_path, monkeypatch, Stuck(Line()))

    async def scenario() -> int:
        async with running(gateway):
            await asyncio.sleep(0.2)
            await gateway.apply_config(gateway.config)
            before = gateway.readings_spooled
            await until(lambda: gateway.readings_spooled > before, 20)  # (a fixed 0.5 s: too short under load)
            return gateway.readings_spooled - before

    assert asyncio.run(scenario()) > 0, "nothing polled after the reload"


def test_two_reloads_at_once_leave_one_scheduler_per_bus_and_none_after_stopping(tmp_path: Path, monkeypatch) -> None:
    """Each reload stops the running buses and starts new ones; two at once (a sender that timed out
    and asked again) each started a set, and the first set, its stop event lost, ran on for good
    against a bus the second reload had closed: every poll a failure, and past the gateway's stop."""
    gateway = _gateway_on_line(tmp_path, monkeypatch, LineTransport(Line()))

    def bus_runs() -> int:
        return sum(1 for t in asyncio.all_tasks() if not t.done() and "BusScheduler.run" in repr(t.get_coro()))

    async def scenario() -> tuple[int, int]:
        async with running(gateway):
            await asyncio.sleep(0.2)
            await asyncio.gather(gateway.apply_config(gateway.config), gateway.apply_config(gateway.config))
            await asyncio.sleep(0.2)
            during = bus_runs()
        return during, bus_runs()

    assert asyncio.run(scenario()) == (1, 0)


def test_scan_reads_pulse_counters_with_their_parameter_and_the_snippet_keeps_it(tmp_path: Path) -> None:
    """The pulse_counter profile needs litres_per_pulse: scan had no way to give it, and crashed
    with a ProfileError traceback; decode modbus could not read one either."""
    from firmware_protocols.modbus import load_profile
    from tests.gateway.helpers import PulseModule

    async def scenario() -> tuple[int, str, int, str]:
        module = PulseModule(5, load_profile("pulse_counter", {"litres_per_pulse": 10}), 1234)
        simulator = ModbusTcpSimulator([module])
        await simulator.start()
        config = tmp_path / "gw.toml"
        config.write_text(
            # units 4 and 6 are refused at once (the simulator answers "no response" for them); unit 5's
            # answer must not be taken for silence where a loaded machine holds it past a short timeout
            config_text("mqtt://127.0.0.1:1", {"b": simulator.port}, {"b": []}, "s.sqlite", timeout_s=2.0, retries=0)
        )
        scan = [
            "gateway",
            "scan",
            str(config),
            "--bus",
            "b",
            "--first",
            "4",
            "--last",
            "6",
            "--profile",
            "pulse_counter",
        ]
        bare = await asyncio.create_subprocess_exec(AQUAMI, *scan, stderr=asyncio.subprocess.PIPE)
        _, bare_err = await bare.communicate()
        given = await asyncio.create_subprocess_exec(
            AQUAMI, *scan, "--param", "litres_per_pulse=10", "--output", str(tmp_path / "found.toml"),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await given.communicate()
        await simulator.stop()
        assert bare.returncode is not None and given.returncode is not None
        return bare.returncode, bare_err.decode(), given.returncode, err.decode()

    bare_code, bare_err, code, err = asyncio.run(scenario())
    assert bare_code == 2 and "needs a parameter" in bare_err and "Traceback" not in bare_err
    assert code == 0, err
    combined = (tmp_path / "gw.toml").read_text() + "\n" + (tmp_path / "found.toml").read_text()
    (meter,) = parse_config_text(combined).meters
    assert (meter.unit_id, meter.profile, meter.parameters) == (5, "pulse_counter", {"litres_per_pulse": 10.0})


def test_scan_snippets_load_back_however_long_the_bus_name() -> None:
    """The placeholder meter ids were '{bus}-unit-{id}': with a bus name of 60 characters (names
    may have 64) the snippet did not load back as configuration."""
    from gateway.scan import Found, FoundMBus, mbus_snippet, snippet

    bus = "b" * 60
    head = 'gateway_id = "g"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
    head += f'[[buses]]\nname = "{bus}"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\nport = 502\n'
    loaded = parse_config_text(
        head + snippet(bus, [Found(247, "smart_water_meter", 1.0), Found(3, "smart_water_meter", 2.0)])
    )
    assert [(m.unit_id, len(m.meter_id)) for m in loaded.meters] == [(247, 64), (3, 64)]  # the bus name cut
    mbus_head = head.replace(
        'protocol = "modbus-tcp"\nhost = "127.0.0.1"\nport = 502', 'protocol = "mbus"\ndevice = "/dev/ttyS0"'
    )
    mbus = parse_config_text(mbus_head + mbus_snippet(bus, [FoundMBus("12345678", 1.0)]))
    assert [m.secondary_address for m in mbus.meters] == ["12345678"]


def test_the_scan_command_says_units_that_answered_badly_and_leaves_pymodbus_out_of_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real pty RTU bus with one smart water meter at unit 1, scanned 1..4 with the holding-register
    electromagnetic_flow_meter profile: unit 1 answers with an exception response. The reply says so
    in ``problems``, as ``aquami gateway scan`` does (before: ``found: []`` and nothing else), and the
    gateway's log has no pymodbus line for the silent units 2..4 (before: one or two each)."""
    caplog.set_level(logging.INFO)
    simulator = ModbusRtuSimulator(meters(1), LineSettings(baudrate=9600, parity="E")).start()
    try:
        bus: dict[str, Any] = {"name": "rtu", "protocol": "modbus-rtu", "device": simulator.line.port}
        bus |= {"parity": PARITY, "timeout_s": 0.3, "poll_interval_s": 3600, "jitter": 0.0, "retries": 0}
        text = bus_config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            tmp_path / "s.sqlite",
            bus,
            [{"meter_id": "WM-0001", "unit_id": 1}],
            gateway_id="gw-scan",
        )
        gateway = Gateway(parse_config_text(text))

        async def scenario() -> list[dict[str, Any]]:
            async with running(gateway):
                await until(lambda: gateway.readings_spooled > 0, 20)  # its first poll is done
                assert gateway._commands is not None
                caplog.clear()
                payload = {"bus": "rtu", "first": 1, "last": 4, "profile": "electromagnetic_flow_meter"}
                await gateway._commands._run("scan", json.dumps({**payload, "request_id": "s1"}).encode())
                said = [r for r in caplog.records if r.name.startswith("pymodbus")]
            assert not said, [r.getMessage() for r in said]
            return [json.loads(m.payload) for m in gateway.publisher._outbox if m.topic.endswith("/scan/reply")]

        replies = asyncio.run(scenario())
        asked = {t.request[0] for t in simulator.line.transactions}
    finally:
        simulator.stop()
    assert asked >= {1, 2, 3, 4}
    [reply] = replies
    assert reply_errors("scan", reply) == []
    assert reply["ok"] is True and reply["found"] == []
    [problem] = reply["problems"]
    assert problem["unit_id"] == 1 and "exception response" in problem["error"], problem


def test_a_scan_quiets_only_its_own_pymodbus_records(caplog: pytest.LogCaptureFixture) -> None:
    """The scan's filter is tied to the scan's own work, not pymodbus's logger level: a record another
    bus's poll logs through pymodbus's logger while the scan runs is kept."""
    from pymodbus.logging import Log

    from gateway.scan import scan_modbus

    caplog.set_level(logging.INFO)
    scanning = asyncio.Event()
    other_done = asyncio.Event()

    async def attempt(meter: MeterConfig) -> Reading:
        Log.warning("scan's own: unit {}", meter.unit_id)
        scanning.set()
        await other_done.wait()
        raise PollError("no reading")

    async def other_bus() -> None:
        await scanning.wait()
        Log.warning("the other bus's")
        other_done.set()

    async def scenario() -> None:
        await asyncio.gather(scan_modbus(attempt, "b", [7]), other_bus())

    asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if r.name.startswith("pymodbus")]
    assert said == ["the other bus's"], said


def test_a_scan_command_replies_the_units_that_answered_after_the_timeout(tmp_path: Path) -> None:
    """Unit 5 answers 0.7 s late on a serial bus with a 0.5 s timeout (its answer comes during unit
    6's request): the scan command's reply lists it in ``late``, as the command line's scan says it.
    Before, the reply was ``found: [6]`` alone, unit 5 as absent as an empty address. Scanned last
    (5..5), its late answer is heard too: the scan listens for the bus's timeout_s after a last unit
    that did not answer (before, it was not heard, and the reply had no ``late``)."""
    slow = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=0.7)])
    simulator = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(baudrate=9600, parity="E"), slow).start()
    bus = {"name": "rtu", "protocol": "modbus-rtu", "device": simulator.port, "parity": PARITY, "timeout_s": 0.5}
    bus |= {"poll_interval_s": 3600, "retries": 0}
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        bus,
        [{"meter_id": "WM-6", "unit_id": 6}],
        gateway_id="gw-late-scan",
    )
    gateway = Gateway(parse_config_text(text))

    async def scenario() -> list[dict[str, Any]]:
        async with running(gateway):
            for _ in range(100):  # the buses and the command handler set up
                if gateway._commands is not None:
                    break
                await asyncio.sleep(0.05)
            assert gateway._commands is not None
            await gateway._commands._run("scan", b'{"bus": "rtu", "first": 5, "last": 6, "request_id": "s1"}')
            await gateway._commands._run("scan", b'{"bus": "rtu", "first": 6, "last": 6, "request_id": "s2"}')
            await gateway._commands._run("scan", b'{"bus": "rtu", "first": 5, "last": 5, "request_id": "s3"}')
        return [json.loads(m.payload) for m in gateway.publisher._outbox if m.topic.endswith("/reply")]

    try:
        replies = asyncio.run(scenario())
    finally:
        simulator.stop()
    assert [reply_errors("scan", reply) for reply in replies] == [[], [], []]
    first, second, third = replies
    assert (first["ok"], first["found"], first.get("late")) == (True, [6], [5]), first
    assert (second["ok"], second["found"], "late" in second) == (True, [6], False), second  # none late: no field
    assert (third["ok"], third["found"], third.get("late")) == (True, [], [5]), third


def _m_bus_scan_reply(
    tmp_path: Path, device: LineDevice, answer_timeout_s: float, faults: WireFaultPlan | None = None
) -> dict[str, Any]:
    """The reply of a ``scan`` command on a gateway whose one M-Bus bus is ``device`` on a simulated
    line (9600 8E1, ``faults``), checked against the commands' contract."""
    line = SerialLine(device, LineSettings(9600, parity="E"), faults).start()
    bus = {"name": "m", "protocol": "mbus", "device": line.port, "baudrate": 9600, "parity": PARITY}
    bus |= {"answer_timeout_s": answer_timeout_s, "poll_interval_s": 3600}
    text = bus_config_text(f"mqtt://127.0.0.1:{free_port()}", tmp_path / "s.sqlite", bus, [], gateway_id="gw-mbus")
    gateway = Gateway(parse_config_text(text))

    async def scenario() -> list[dict[str, Any]]:
        async with running(gateway):
            for _ in range(100):  # the buses and the command handler set up
                if gateway._commands is not None:
                    break
                await asyncio.sleep(0.05)
            assert gateway._commands is not None
            await gateway._commands._run("scan", b'{"bus": "m", "request_id": "s1"}')
        return [json.loads(m.payload) for m in gateway.publisher._outbox if m.topic.endswith("/reply")]

    try:
        (reply,) = asyncio.run(scenario())
    finally:
        line.stop()
    assert reply_errors("scan", reply) == []
    return reply


def test_an_m_bus_scan_command_replies_the_selections_answered_after_the_window(tmp_path: Path) -> None:
    """The line's one meter acknowledges its selection 0.45 s late, after the 0.3 s window: the
    search's only selection (FFFFFFFF) is its last. The reply lists the selections left unanswered
    before the late E5h came, ``late_selections``. Before, the search closed the port after it, and
    the reply was ``found: []`` alone."""
    from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves

    slow = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=0, delay_s=0.45)])
    reply = _m_bus_scan_reply(tmp_path, MBusSlaves([MBusSlave(0, "12340001", 1.0)]), 0.3, slow)
    assert (reply["ok"], reply["found"], reply.get("late_selections")) == (True, [], [["FFFFFFFF"]]), reply


def test_an_m_bus_scan_command_replies_a_lone_e5h_after_a_read_answer_with_the_selection_answered(
    tmp_path: Path,
) -> None:
    """The line's one meter, 22220001, acknowledges the search's first selection (FFFFFFFF) and
    answers its read in time, and a lone E5h comes 30 ms after its RSP_UD: a late acknowledgement
    with no selection left unanswered since. The reply lists it with the selection answered,
    ``late_selections: [["FFFFFFFF"]]``, marked so by ``late_selections_answered: [true]``. Before,
    the entry was empty, ``[[]]``: nothing to look at."""
    from tests.gateway.mbus_slaves import MBusSlave
    from tests.gateway.test_mbus_late_answers import TrailingRead

    slaves = TrailingRead([MBusSlave(5, "22220001", 1.0)], b"\xe5")
    reply = _m_bus_scan_reply(tmp_path, slaves, 0.3)
    late = (reply.get("late_selections"), reply.get("late_selections_answered"))
    assert (reply["ok"], reply["found"], late) == (True, ["22220001"], ([["FFFFFFFF"]], [True])), reply


def test_an_m_bus_scan_command_replies_the_meters_whose_read_came_late_by_their_identification(
    tmp_path: Path,
) -> None:
    """The line's one meter acknowledges its selections at once, but its RSP_UD to the search's read
    comes 0.3 s late, after the 0.2 s window, in the next selection's. The reply lists it by the
    identification its answer carries, ``late_identifications``. Before, that answer was read as the
    next selection's collision, and the reply was ``found: []`` alone."""
    from tests.gateway.mbus_slaves import MBusSlave, SlowReads

    reply = _m_bus_scan_reply(tmp_path, SlowReads([MBusSlave(0, "12340001", 1.0)], 0.3), 0.2)
    assert (reply["ok"], reply["found"], reply.get("late_identifications")) == (True, [], ["12340001"]), reply


def test_an_m_bus_scan_command_says_a_late_e5h_a_poll_s_meter_may_have_sent_with_that_meter(
    tmp_path: Path, mosquitto
) -> None:
    """DEAD-3 never answers; the meter 22220001 (not configured) acknowledges its selection 0.45 s
    late, after the 0.3 s window. A read-now of DEAD-3 leaves its SND_NKE unanswered, and a scan sent
    right after it hears the E5h as the search listens after its only selection: DEAD-3 may have sent
    it as well as 22220001 (an E5h names no meter), and the gateway's log says it with both. The
    reply says so too: ``late_selections_may_be_polls`` has DEAD-3 beside the entry. Before, the reply
    had ``late_selections`` alone, the E5h said as the search's "a meter too late to be found". A
    scan sent longer than the bus's timeout_s after the poll has DEAD-3 no longer awaiting: no field."""
    from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves

    root = "aquami/v1/gw-mbus-polls"
    subscriber = Subscriber(mosquitto.url, [f"{root}/cmd/+/reply"], client_id="cmd-mbus-polls")
    slow = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=0.45)])
    line = SerialLine(MBusSlaves([MBusSlave(5, "22220001", 1.0)]), LineSettings(9600, parity="E"), slow).start()
    bus = {"name": "m", "protocol": "mbus", "device": line.port, "baudrate": 9600, "parity": PARITY}
    # timeout_s: the poll's E5h is awaited this long after its window, wide enough for the commands' round trip
    bus |= {"answer_timeout_s": 0.3, "timeout_s": 2.0, "retries": 0, "poll_interval_s": 3600}
    text = bus_config_text(
        mosquitto.url, tmp_path / "s.sqlite", bus, [{"meter_id": "DEAD-3", "address": 3}], gateway_id="gw-mbus-polls"
    )
    gateway = Gateway(parse_config_text(text))
    replies: dict[str, dict[str, Any]] = {}

    async def ask(name: str, body: dict[str, Any]) -> dict[str, Any]:
        request_id = f"{name}-{len(replies)}"
        subscriber.client.publish(f"{root}/cmd/{name}", json.dumps({**body, "request_id": request_id}), qos=1)

        def replied() -> list[dict[str, Any]]:
            return [r for r in subscriber.payloads(f"/cmd/{name}/reply") if r.get("request_id") == request_id]

        await asyncio.to_thread(subscriber.wait_for, lambda: bool(replied()), 20, f"a reply to {name}")
        return replied()[0]

    async def scenario() -> None:
        async with running(gateway):
            await asyncio.to_thread(gateway.publisher.connected.wait, 10)
            await listening(subscriber, root=root)
            replies["read"] = await ask("read-now", {"meter_id": "DEAD-3"})
            replies["scan"] = await ask("scan", {"bus": "m"})
            await asyncio.sleep(2.2)  # longer than the bus's timeout_s: DEAD-3 awaits its E5h no longer
            replies["later"] = await ask("scan", {"bus": "m"})

    try:
        asyncio.run(scenario())
    finally:
        line.stop()
        subscriber.close()
    read, scan, later = replies["read"], replies["scan"], replies["later"]
    assert [reply_errors(name, reply) for name, reply in (("read-now", read), ("scan", scan), ("scan", later))] == [
        [],
        [],
        [],
    ]
    no_answer = "DEAD-3: no reading after 1 attempt: DEAD-3: no answer from primary address 3"
    assert (read["ok"], read["error"]) == (False, no_answer), read
    assert (scan["ok"], scan["found"], scan.get("late_selections"), scan.get("late_selections_may_be_polls")) == (
        True,
        [],
        [["FFFFFFFF"]],
        [["DEAD-3"]],
    ), scan
    assert (later["ok"], later.get("late_selections"), "late_selections_may_be_polls" in later) == (
        True,
        [["FFFFFFFF"]],
        False,
    ), later
