"""Fault requests to a running rig: what is refused, and that nothing a technician sends can stop the rig."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from aquami.cli import app
from firmware_protocols.mbus import build_req_ud2, build_snd_ud_select, decode_frame
from simulators.events import Leak
from simulators.meter_model import MeterModel
from simulators.rig.client import RigClientError, parse_options
from simulators.rig.config import ConfigError, parse_rig_text
from simulators.rig.control import ControlServer
from simulators.rig.faults import (
    FAULT_KINDS,
    INLET_KINDS,
    MAX_DURATION_S,
    MAX_RATE_LPH,
    meter_fault,
    parse_fault,
    wire_rule,
)
from simulators.rig.runner import Rig
from simulators.rig.running import NEVER_TOOK_EFFECT
from simulators.rig.serve import serve
from tests.simulators.mbus_wire import mbus

NOW = datetime(2026, 2, 1, 12, 0, 30, tzinfo=UTC)

RIG = """
[rig]
seed = 7
installed = "2026-01-01T00:00:00Z"
control = "127.0.0.1:0"

[[transport]]
name = "rtu"
protocol = "modbus_rtu"

[[meter]]
id = "M1"
kind = "smart_water_meter"
transport = "rtu"
address = 1

[[meter]]
id = "M2"
kind = "smart_water_meter"
transport = "rtu"
address = 2
"""


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("rate_lph", math.nan, "rate_lph: nan is not a finite number"),
        ("rate_lph", math.inf, "rate_lph: inf is not a finite number"),
        ("rate_lph", 1e308, "rate_lph: 1e+308 is outside 0..1000000 l/h"),
        ("duration_s", 1e12, "duration_s: 1000000000000.0 is outside 0.001..31536000 s (365 days; leave it out"),
        ("duration_s", 10**400, "duration_s: 1000000"),
        ("probability", -math.inf, "probability: -inf is not a finite number"),
        ("delay_s", math.nan, "delay_s: nan is not a finite number"),
    ],
)
def test_non_finite_and_huge_options_are_refused_by_name(option: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_fault({"kind": "leak" if option == "rate_lph" else "slow", option: value}, "smart_water_meter")


@given(
    kind=st.sampled_from([k for k in FAULT_KINDS if k != "main_burst"]),
    option=st.sampled_from(["probability", "delay_s", "duration_s", "rate_lph", "registered_share"]),
    value=st.floats() | st.integers(min_value=-(10**400), max_value=10**400),
)
def test_an_accepted_fault_can_always_be_applied(kind: str, option: str, value: float) -> None:
    """Whatever number a request carries, it is refused (ValueError) or it makes a fault the rig can run
    (a technician's work, done on the transports, not the water, runs for a finite duration_s, if any)."""
    try:
        spec = parse_fault({"kind": kind, option: value}, "smart_water_meter")
    except ValueError:
        return
    assert all(math.isfinite(v) for v in (spec.probability, spec.delay_s, spec.duration_s or 0, spec.rate_lph or 0))
    if spec.is_work:
        assert spec.duration_s is None or 0 < spec.duration_s <= MAX_DURATION_S
        return
    fault = wire_rule(spec, 1, NOW) if spec.is_wire else meter_fault(spec, NOW)
    assert fault.end is None or fault.end <= NOW + timedelta(seconds=MAX_DURATION_S)
    assert (spec.rate_lph or 0.0) <= MAX_RATE_LPH


def test_the_rig_file_refuses_nan_and_huge_faults() -> None:
    with pytest.raises(ConfigError, match=r"meter\[0\]\.faults\[0\]: rate_lph: nan is not a finite number"):
        parse_rig_text(RIG.replace("address = 1\n", 'address = 1\nfaults = [{ kind = "leak", rate_lph = nan }]\n'))
    with pytest.raises(ConfigError, match=r"meter\[0\]\.faults\[0\]: duration_s: .* is outside 0.001..31536000 s"):
        parse_rig_text(RIG.replace("address = 1\n", 'address = 1\nfaults = [{ kind = "slow", duration_s = 1e12 }]\n'))


def test_the_command_refuses_non_finite_options() -> None:
    assert parse_options(["rate_lph=40", "delay_s=0.5", "kind=x"]) == {"rate_lph": 40, "delay_s": 0.5, "kind": "x"}
    for text in ("nan", "inf", "-Infinity", "1e400"):
        with pytest.raises(RigClientError, match=f"option 'rate_lph={text}': {text} is not a finite number"):
            parse_options([f"rate_lph={text}"])


@pytest.fixture
def control() -> Iterator[tuple[Rig, str]]:
    rig = Rig(parse_rig_text(RIG, now=NOW), clock=lambda: NOW)
    asyncio.run(rig.start())
    server = ControlServer(rig).start()
    try:
        yield rig, server.url
    finally:
        server.stop()
        asyncio.run(rig.stop())


def _request(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """The control endpoint's status and JSON answer, an error's too."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(f"{url}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return _request(url, "POST", "/faults", body)


def test_the_endpoint_answers_400_naming_the_field(control: tuple[Rig, str]) -> None:
    rig, url = control
    status, problem = _post(url, {"meter": "M1", "fault": "leak", "rate_lph": math.nan})  # json sends NaN
    assert (status, problem["detail"]) == (400, "rate_lph: nan is not a finite number")
    status, problem = _post(url, {"meter": "M1", "fault": "slow", "duration_s": 1e12})
    assert status == 400 and problem["detail"].startswith("duration_s: 1000000000000.0 is outside 0.001..31536000 s")
    model = rig.meters["M1"].model
    assert isinstance(model, MeterModel)
    assert rig.active_faults() == [] and model.faults == []
    status, fault = _post(url, {"meter": "M1", "fault": "burst", "rate_lph": MAX_RATE_LPH, "duration_s": 600})
    assert status == 201 and fault["rate_lph"] == MAX_RATE_LPH
    assert model.read(NOW + timedelta(seconds=90)).flow_m3h >= MAX_RATE_LPH / 1000


def test_the_fault_is_named_once(control: tuple[Rig, str]) -> None:
    """A "kind" beside the "fault" took its place: {"fault": "leak", "kind": "burst"} (what
    ``aquami simulate fault M1 leak --set kind=burst`` sent) injected a burst. Now it is refused."""
    rig, url = control
    status, problem = _post(url, {"meter": "M1", "fault": "leak", "kind": "burst"})
    assert (status, problem["detail"]) == (400, "kind: name the fault by 'fault' alone")
    assert rig.active_faults() == []


def _raw_post(url: str, content_length: str, *, wait_s: float) -> bytes:
    """POST /faults with the header ``Content-Length`` as given and the 2-byte body ``{}``, written
    as is (an HTTP client would mend the header); all that comes back until the endpoint closes
    (it closes after answering: an HTTP/1.0 server)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as connection:
        connection.sendall(f"POST /faults HTTP/1.1\r\nHost: x\r\nContent-Length: {content_length}\r\n\r\n{{}}".encode())
        return connection.makefile("rb").read()


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("length", "status", "detail"),
    [
        ("-1", 400, "Content-Length: expected a whole number of bytes"),
        ("+5", 400, "Content-Length: expected a whole number of bytes"),
        ("99999999", 413, "body: more than 65536 bytes"),
    ],
)
def test_the_endpoint_refuses_a_body_length_it_cannot_read_at_once(
    control: tuple[Rig, str], length: str, status: int, detail: str
) -> None:
    """Before, ``Content-Length: -1`` made the endpoint read until the client hung up."""
    answer = _raw_post(control[1], length, wait_s=5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == str(status).encode()
    assert json.loads(body)["detail"] == detail


@pytest.mark.timeout(30)
def test_a_client_that_sends_less_than_its_content_length_is_let_go(control: tuple[Rig, str]) -> None:
    """Content-Length 10 and two bytes sent: the endpoint waited for the rest for ever, one thread
    per such client. It now gives up after its request timeout and closes the connection."""
    started = time.monotonic()
    answer = _raw_post(control[1], "10", wait_s=20)  # b"" once the endpoint closes, or a 400
    assert time.monotonic() - started < 5.0 + 3, answer
    assert answer in (b"",) or answer.split()[1] == b"400"


def test_a_meter_that_cannot_be_read_does_not_end_the_rig() -> None:
    """A broken meter model (here a NaN leak put straight into it) shows its error in its row; the live
    table, which reads every row every second, and every other meter carry on."""
    config = parse_rig_text(RIG)
    outcome: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()

        def ready(rig: Rig) -> None:
            model = rig.meters["M1"].model
            assert isinstance(model, MeterModel)
            model.inject(Leak(start=rig.clock() - timedelta(hours=1), rate_lph=math.nan))
            outcome["rig"] = rig

        task = asyncio.create_task(serve(config, console=Console(file=io.StringIO()), ready=ready, stop=stop))
        await asyncio.sleep(2.5)  # the table refreshes every second
        outcome["running"] = not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert outcome["running"]
    m1, m2 = outcome["rig"].rows()
    assert m1["register"].startswith("error: ") and m1["flow_m3h"] is None
    assert m2["register"].endswith(" m3") and m2["flow_m3h"] is not None


def test_a_fault_injected_or_cleared_mid_step_keeps_what_was_read() -> None:
    """The technician's burst and stuck come and go at any instant; the register a gateway read stays."""
    clock = {"now": NOW + timedelta(seconds=5)}
    rig = Rig(parse_rig_text(RIG, now=NOW), clock=lambda: clock["now"])
    asyncio.run(rig.start())
    try:
        model = rig.meters["M1"].model

        def register() -> float:
            return model.read(clock["now"]).volume_m3

        burst = rig.inject("M1", {"kind": "burst"})
        clock["now"] += timedelta(minutes=10, seconds=30)
        before = register()
        stuck = rig.inject("M1", {"kind": "stuck"})
        assert register() == before
        clock["now"] += timedelta(seconds=60)  # stuck from the next step on
        frozen = register()
        clock["now"] += timedelta(minutes=5)
        assert register() == frozen >= before
        rig.clear(fault_id=stuck.fault_id)
        clock["now"] += timedelta(minutes=3, seconds=10)
        before = register()
        rig.clear(fault_id=burst.fault_id)
        assert register() == before
        clock["now"] += timedelta(minutes=2)
        assert model.read(clock["now"]).flow_m3h < 1.5  # the burst has ended on the model too
        assert rig.active_faults() == []
    finally:
        asyncio.run(rig.stop())


MBUS_RIG = """
[rig]
seed = 7
installed = "2026-01-01T00:00:00Z"
control = "127.0.0.1:0"

[[transport]]
name = "mb"
protocol = "mbus"

[[meter]]
id = "MB1"
kind = "mbus_water"
transport = "mb"
address = 0
secondary = "26000001"

[[meter]]
id = "MB2"
kind = "mbus_water"
transport = "mb"
address = 0
secondary = "26000002"
"""


def test_an_mbus_wire_fault_hits_its_own_meter_at_a_shared_address() -> None:
    """Two meters at primary 0 (reached by secondary address): `absent` on one leaves the other there."""
    rig = Rig(parse_rig_text(MBUS_RIG, now=NOW), clock=lambda: NOW)
    asyncio.run(rig.start())
    try:
        port = rig.where["mb"]
        rig.inject("MB1", {"kind": "absent"})
        assert mbus(port, build_snd_ud_select("26000001"), wait_s=0.6) == b""  # no answer: a short wait
        assert mbus(port, build_snd_ud_select("26000002")) == b"\xe5"
        assert decode_frame(mbus(port, build_req_ud2(0xFD, fcb=True)))["id"] == "26000002"
        assert {r["meter"]: r["faults"] for r in rig.rows()} == {"MB1": ["absent"], "MB2": []}
    finally:
        asyncio.run(rig.stop())


TWO_LINES = """
[rig]
seed = 7
installed = "2026-01-01T00:00:00Z"
control = "127.0.0.1:0"

[[transport]]
name = "rtu-a"
protocol = "modbus_rtu"

[[transport]]
name = "rtu-b"
protocol = "modbus_rtu"

[[meter]]
id = "A1"
kind = "smart_water_meter"
transport = "rtu-a"
address = 1

[[meter]]
id = "B1"
kind = "smart_water_meter"
transport = "rtu-b"
address = 1
"""


def _lost_pattern(config_text: str) -> dict[str, str]:
    """Which of 64 replies a p=0.5 no_reply loses, per meter, on a freshly started rig."""
    rig = Rig(parse_rig_text(config_text, now=NOW), clock=lambda: NOW)
    asyncio.run(rig.start())
    try:
        out = {}
        for meter_id, meter in rig.meters.items():
            rig.inject(meter_id, {"kind": "no_reply", "probability": 0.5})
            lost = [meter.plan.apply(b"reply", meter.fault_address, NOW).reply is None for _ in range(64)]
            out[meter_id] = "".join("x" if x else "." for x in lost)
        return out
    finally:
        asyncio.run(rig.stop())


def test_probabilistic_faults_on_different_transports_fire_independently_and_reproducibly() -> None:
    """The same fault, injected as the first on each of two transports, must not fire in lock-step;
    the same rig file gives the same patterns again."""
    first = _lost_pattern(TWO_LINES)
    assert first["A1"] != first["B1"]
    assert 16 < first["A1"].count("x") < 48 and 16 < first["B1"].count("x") < 48
    assert _lost_pattern(TWO_LINES) == first
    assert _lost_pattern(TWO_LINES.replace("seed = 7", "seed = 8")) != first


def test_a_meter_fault_shorter_than_a_step_shows_for_a_step_and_says_when() -> None:
    """Before, a 30 s tamper injected 30 s into a minute was moved to start and end on the same step
    boundary: answered 201 and listed as active, it never reached the wire, and ``since`` was the
    request's instant, not the meter's."""
    clock = {"now": NOW}  # 30 s into a minute
    rig = Rig(parse_rig_text(RIG, now=NOW), clock=lambda: clock["now"])
    asyncio.run(rig.start())
    try:
        tamper = rig.inject("M1", {"kind": "tamper", "duration_s": 30})
        burst = rig.inject("M2", {"kind": "burst", "rate_lph": 3000, "duration_s": 40})
        step = datetime(2026, 2, 1, 12, 1, tzinfo=UTC)
        for fault in (tamper, burst):
            assert (fault.since, fault.until) == (step, step + timedelta(minutes=1))
            assert fault.to_json()["since"] == "2026-02-01T12:01:00Z"
        m1, m2 = rig.meters["M1"].model, rig.meters["M2"].model
        assert "tamper" in m1.read(step + timedelta(seconds=30)).alarms
        assert "tamper" not in m1.read(step + timedelta(seconds=90)).alarms
        assert m2.read(step + timedelta(seconds=30)).flow_m3h >= 3.0
        unfaulted = MeterModel("M2", installed=datetime(2026, 1, 1, tzinfo=UTC), seed=7, dma="RIG")
        extra = [m2.read(at).volume_m3 - unfaulted.read(at).volume_m3 for at in (step, step + timedelta(minutes=2))]
        assert extra[0] == 0.0 and abs(extra[1] - 0.05) <= 0.0011  # 3 m3/h for one 60 s step
    finally:
        asyncio.run(rig.stop())


@given(offset_us=st.integers(0, 59_999_999), length_us=st.integers(1, 3 * 3_600_000_000))
def test_a_meter_fault_keeps_its_length_rounded_up_to_whole_steps(offset_us: int, length_us: int) -> None:
    meter = MeterModel("M1", installed=datetime(2026, 1, 1, tzinfo=UTC))
    start = NOW.replace(second=0) + timedelta(microseconds=offset_us)
    applied = meter.inject(Leak(start=start, end=start + timedelta(microseconds=length_us), rate_lph=10.0))
    assert applied.end is not None
    length = (applied.end - applied.start).total_seconds()
    assert applied.start >= start and length % 60 == 0 and length_us / 1e6 <= length < length_us / 1e6 + 60


def _delete(url: str, path: str) -> tuple[int, Any]:
    return _request(url, "DELETE", path)


def test_clearing_names_the_meter_and_a_wrong_one_is_refused(control: tuple[Rig, str]) -> None:
    """Before, ``aquami simulate fault M2 --clear 1`` cleared fault 1 whichever meter it was on, and
    clearing the faults of a meter not on the rig answered 200 [] (exit 0)."""
    rig, url = control
    status, leak = _post(url, {"meter": "M1", "fault": "leak"})
    assert status == 201
    assert _delete(url, f"/faults/{leak['id']}?meter=M2") == (
        404,
        {"type": "about:blank", "title": "Not Found", "status": 404, "detail": f"no fault {leak['id']} on meter 'M2'"},
    )
    assert _delete(url, "/faults?meter=NOPE")[1]["detail"] == "meter: 'NOPE' is not on this rig"
    assert [f.fault_id for f in rig.active_faults()] == [leak["id"]]  # still on

    runner = CliRunner()
    wrong = runner.invoke(app, ["simulate", "fault", "--rig", url, "M2", "--clear", str(leak["id"])])
    assert wrong.exit_code == 1 and f"404: no fault {leak['id']} on meter 'M2'" in wrong.output
    unknown = runner.invoke(app, ["simulate", "fault", "--rig", url, "NOPE", "--clear"])
    assert unknown.exit_code == 1 and "404: meter: 'NOPE' is not on this rig" in unknown.output
    not_an_id = runner.invoke(app, ["simulate", "fault", "--rig", url, "M1", "--clear", "leak"])
    assert not_an_id.exit_code == 2 and "give a fault id (a number) or nothing, not 'leak'" in not_an_id.output
    right = runner.invoke(app, ["simulate", "fault", "--rig", url, "M1", "--clear", str(leak["id"])])
    assert right.exit_code == 0 and json.loads(right.output)[0]["id"] == leak["id"]
    assert rig.active_faults() == []


def test_a_busy_control_port_is_named_and_the_transports_are_let_go() -> None:
    """Before, the rig stopped on a bare '[Errno 98] Address already in use', naming neither the
    setting nor the port, with its transports still open."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = parse_rig_text(RIG.replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'), now=NOW)
        stopped: list[Rig] = []
        real_stop = Rig.stop

        async def stop(rig: Rig) -> None:
            stopped.append(rig)
            await real_stop(rig)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Rig, "stop", stop)
            with pytest.raises(OSError, match=rf"rig\.control 127\.0\.0\.1:{port}: Address already in use"):
                asyncio.run(serve(config, table=False, console=Console(file=io.StringIO())))
    assert len(stopped) == 1


def test_a_cleared_fault_is_answered_with_its_end(control: tuple[Rig, str]) -> None:
    """``aquami simulate fault M1 --clear`` prints the faults it cleared; before, each with ``"until":
    null``, as if still going, though the state file had it cleared. A wire fault ends as it is
    cleared; a leak, which changes the water, at the meter's next step, as it began at one: cleared
    before that step, it never took effect, and the answer says so (before, only ``since`` equal to
    ``until`` told it). Times are UTC with a ``Z``, as the product writes them (before, ``+00:00``)."""
    rig, url = control
    assert _post(url, {"meter": "M1", "fault": "no_reply"})[0] == 201
    status, leak = _post(url, {"meter": "M1", "fault": "leak", "rate_lph": 40})
    next_step = "2026-02-01T12:01:00Z"
    assert status == 201 and leak["since"] == next_step and "note" not in leak  # from the next step on
    cleared = CliRunner().invoke(app, ["simulate", "fault", "--rig", url, "M1", "--clear"])
    assert cleared.exit_code == 0, cleared.output
    answer = {f["kind"]: f for f in json.loads(cleared.output)}
    ends = {kind: (f["since"], f["until"]) for kind, f in answer.items()}
    now = "2026-02-01T12:00:30Z"
    assert ends == {"no_reply": (now, now), "leak": (next_step, next_step)}
    assert answer["leak"]["note"] == NEVER_TOOK_EFFECT and "never took effect" in NEVER_TOOK_EFFECT
    assert "note" not in answer["no_reply"]  # on the wire from the moment it was injected
    assert rig.active_faults() == []


def test_a_water_fault_cleared_after_its_first_step_is_answered_without_a_note() -> None:
    clock = {"now": NOW}
    rig = Rig(parse_rig_text(RIG, now=NOW), clock=lambda: clock["now"])
    asyncio.run(rig.start())
    try:
        leak = rig.inject("M1", {"kind": "leak", "rate_lph": 40})
        clock["now"] = NOW + timedelta(minutes=2)
        [cleared] = rig.clear(meter_id="M1")
        answer = cleared.to_json()
        assert (answer["since"], answer["until"]) == ("2026-02-01T12:01:00Z", "2026-02-01T12:03:00Z")
        assert leak is cleared and "note" not in answer
    finally:
        asyncio.run(rig.stop())


#: What each fault takes, from simulators/rig/faults.py's docstring (every fault: duration_s).
_TAKES = {
    **{kind: {"duration_s", "probability"} for kind in ("no_reply", "bad_checksum", "truncated", "absent")},
    "slow": {"duration_s", "probability", "delay_s"},
    "garbled": {"duration_s", "probability", "flips"},
    **{kind: {"duration_s", "rate_lph"} for kind in ("leak", "burst", "reverse_flow", "main_burst")},
    "tamper": {"duration_s", "registered_share"},
    **{kind: {"duration_s"} for kind in ("stuck", "dry", "low_battery", "meter_error")},
    # a technician's work, until cleared or for duration_s (tests/simulators/test_rig_meter_work.py)
    "swap_address": {"duration_s", "with_meter"},
    "exchange": {"duration_s", "serial_number", "volume_m3"},
}
_OPTION_VALUES = {
    "probability": 0.5,
    "delay_s": 2,
    "flips": 2,
    "duration_s": 60,
    "rate_lph": 40,
    "registered_share": 0.5,
}


@given(kind=st.sampled_from(FAULT_KINDS), option=st.sampled_from(sorted(_OPTION_VALUES)))
def test_an_option_a_fault_does_not_take_is_refused_naming_the_kind_s_own(kind: str, option: str) -> None:
    """`aquami simulate fault M000001 leak --set delay_s=2` injected a 20 l/h leak and said nothing
    of the delay, as if the technician had been given what they asked for. An option the kind does
    not take is now refused, in the command (exit 2, before the rig is called), a rig file or the
    endpoint alike, naming the options it takes; one it takes is used."""
    meter_kind = "dma_inlet" if kind in INLET_KINDS else "smart_water_meter"
    other = {"with_meter": "M2"} if kind == "swap_address" else {}  # (what a swap needs besides)
    request = {"kind": kind, option: _OPTION_VALUES[option], **other}
    sets = [f"--set={name}={value}" for name, value in request.items() if name != "kind"]
    result = CliRunner().invoke(
        app, ["simulate", "fault", "--rig", "http://127.0.0.1:9", "M1", kind, *sets], env={"COLUMNS": "400"}
    )
    if option in _TAKES[kind]:
        assert parse_fault(request, meter_kind).to_json()[option] == _OPTION_VALUES[option]
        assert "cannot reach the rig" in result.output  # checked, then sent: no rig at port 9
    else:
        said = f"^{option} does not apply to an? {kind} fault( on a smart_water_meter meter)? \\(its options: "
        with pytest.raises(ValueError, match=said):
            parse_fault(request, meter_kind)
        article = "an" if kind == "exchange" else "a"
        assert result.exit_code == 2 and f"{option} does not apply to {article} {kind} fault" in result.output, (
            result.output
        )
        # a state file keeps every option (as written by earlier rigs too): read back as it was
        assert parse_fault(request, meter_kind, only_its_options=False).kind == kind
