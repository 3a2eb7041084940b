"""A restarted rig reads on from where it was: the faults of the config and of the endpoint outlive it."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aquami.cli import app
from simulators.rig.config import parse_rig_text
from simulators.rig.control import ControlServer
from simulators.rig.runner import Rig
from simulators.rig.state import RigStateError, state_path_for

T0 = datetime(2026, 2, 1, 12, 0, 20, tzinfo=UTC)

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
faults = [{ kind = "burst", rate_lph = 100000 }, { kind = "no_reply" }]

[[meter]]
id = "M2"
kind = "smart_water_meter"
transport = "rtu"
address = 2

[[meter]]
id = "INLET"
kind = "dma_inlet"
transport = "rtu"
address = 10
customers = ["M1", "M2"]
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _started(text: str, clock: Clock, state: Path | None) -> Rig:
    rig = Rig(parse_rig_text(text, now=T0), clock=clock, state_path=state)
    asyncio.run(rig.start())
    return rig


def _registers(rig: Rig, at: datetime) -> dict[str, float]:
    return {meter_id: meter.model.read(at).volume_m3 for meter_id, meter in rig.meters.items()}


def _stop(rig: Rig) -> None:
    asyncio.run(rig.stop())


def test_a_restarted_rig_reads_what_it_would_have_without_the_restart(tmp_path: Path) -> None:
    """Before, the config's burst began again at the restart and the endpoint's faults were forgotten:
    the registers went back (2.500 and 1.250 m³ in the review's run)."""
    state = tmp_path / "rig.state.json"
    clock = Clock(T0)
    first = _started(RIG, clock, state)
    clock.now = T0 + timedelta(seconds=5)
    leak = first.inject("M2", {"kind": "leak", "rate_lph": 50_000})
    main_burst = first.inject("INLET", {"kind": "main_burst", "rate_lph": 20_000})
    first.inject("M2", {"kind": "slow", "delay_s": 0.1})
    clock.now = T0 + timedelta(minutes=3, seconds=10)
    first.clear(fault_id=leak.fault_id)
    clock.now = T0 + timedelta(minutes=5, seconds=40)
    first.clear(fault_id=main_burst.fault_id)
    clock.now = T0 + timedelta(minutes=7, seconds=5)
    faults_before = [f.to_json() for f in first.active_faults()]
    _stop(first)

    clock.now = T0 + timedelta(minutes=9, seconds=30)  # down for a while, then started again
    second = _started(RIG, clock, state)
    try:
        # the first rig, never stopped, is the reference: the models are pure functions of time
        for at in (clock.now, clock.now + timedelta(minutes=4), clock.now + timedelta(hours=2)):
            assert _registers(second, at) == _registers(first, at)
        assert [f.to_json() for f in second.active_faults()] == faults_before
        assert {f.spec.kind for f in second.active_faults()} == {"burst", "no_reply", "slow"}
        later = second.inject("M2", {"kind": "leak"})
        assert later.fault_id > max(f["id"] for f in faults_before)  # ids go on, not over again
    finally:
        _stop(second)


def test_a_config_fault_that_was_changed_ends_at_the_restart_and_the_new_one_starts_then(tmp_path: Path) -> None:
    state = tmp_path / "rig.state.json"
    clock = Clock(T0)
    first = _started(RIG, clock, state)
    _stop(first)
    restart = T0 + timedelta(minutes=30, seconds=15)
    clock.now = restart
    changed = RIG.replace("rate_lph = 100000", "rate_lph = 1000")
    second = _started(changed, clock, state)
    try:
        at = restart - timedelta(seconds=1)
        assert second.meters["M1"].model.read(at).volume_m3 == first.meters["M1"].model.read(at).volume_m3
        burst = next(f for f in second.active_faults() if f.spec.kind == "burst")
        assert burst.since == restart + timedelta(seconds=25) and burst.spec.rate_lph == 1000  # the next step
        saved = json.loads(state.read_text())["faults"]
        assert [(f["spec"]["rate_lph"], f["cleared"]) for f in saved if f["spec"]["kind"] == "burst"] == [
            (100000.0, "2026-02-01T12:30:35Z"),
            (1000.0, None),
        ]
    finally:
        _stop(second)


def test_a_state_file_of_other_water_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "rig.state.json"
    _stop(_started(RIG, Clock(T0), state))
    before = state.read_text()
    with pytest.raises(RigStateError, match=r"rig\.state\.json: written for seed 7 .* the rig has seed 8"):
        Rig(parse_rig_text(RIG.replace("seed = 7", "seed = 8"), now=T0), state_path=state)
    state.write_text("{not json")
    with pytest.raises(RigStateError, match=r"rig\.state\.json: not a rig state file"):
        Rig(parse_rig_text(RIG, now=T0), state_path=state)
    state.write_text(before)  # left as it was by the refusals
    assert state_path_for(Path("simulators/examples/rig.toml")) == Path("simulators/examples/rig.state.json")


def test_a_state_file_of_another_meter_step_is_refused_and_one_from_before_step_s_is_60_s(tmp_path: Path) -> None:
    """The water is drawn step by step: the faults of a rig stepping every 60 s replayed on one stepping
    every second would be other water, as another seed's are."""
    state = tmp_path / "rig.state.json"
    _stop(_started(RIG, Clock(T0), state))
    before = state.read_text()
    assert json.loads(before)["step_s"] == 60
    fast = RIG.replace("[rig]", "[rig]\nstep_s = 1")
    refused = r"rig\.state\.json: written for meters stepping every 60 s, but the rig's step_s is 1"
    with pytest.raises(RigStateError, match=refused):
        Rig(parse_rig_text(fast, now=T0), state_path=state)
    assert state.read_text() == before  # left as it was by the refusal
    document = json.loads(before)
    del document["step_s"]  # as written before the rig had a step_s: at its only step, 60 s
    state.write_text(json.dumps(document))
    again = _started(RIG, Clock(T0 + timedelta(minutes=1)), state)  # taken, at 60 s
    _stop(again)
    assert {f.spec.kind for f in again.active_faults()} == {"burst", "no_reply"}
    with pytest.raises(RigStateError, match=r"every 60 s, but the rig's step_s is 1"):
        Rig(parse_rig_text(fast, now=T0), state_path=state)


def test_a_meter_taken_off_the_rig_keeps_its_faults_in_the_file(tmp_path: Path) -> None:
    state = tmp_path / "rig.state.json"
    clock = Clock(T0)
    first = _started(RIG, clock, state)
    first.inject("M2", {"kind": "leak"})
    _stop(first)
    without_m2 = RIG.replace('customers = ["M1", "M2"]', 'customers = ["M1"]').replace(
        '[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "rtu"\naddress = 2\n', ""
    )
    _stop(_started(without_m2, clock, state))
    assert [f["meter"] for f in json.loads(state.read_text())["faults"] if f["spec"]["kind"] == "leak"] == ["M2"]


def test_a_state_file_that_cannot_be_written_is_said_so(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    rig = _started(RIG, Clock(T0), folder / "rig.state.json")
    server = ControlServer(rig).start()
    try:
        shutil.rmtree(folder)
        request = urllib.request.Request(
            f"{server.url}/faults", json.dumps({"meter": "M2", "fault": "leak"}).encode(), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 500
        detail = json.loads(refused.value.read())["detail"]
        assert detail.startswith("the fault is in force, but state file ") and "will not outlive a restart" in detail
        assert [f.spec.kind for f in rig.active_faults() if f.meter_id == "M2"] == ["leak"]
    finally:
        server.stop()
        _stop(rig)


def test_the_command_checks_the_state_file_and_runs_with_it_beside_the_rig_file(tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(RIG.replace("seed = 7", "seed = 9"))
    state = tmp_path / "bench.state.json"
    _stop(_started(RIG, Clock(T0), state))  # a state file of seed 7
    result = CliRunner().invoke(app, ["simulate", "rig", "--config", str(config), "--check"])
    assert result.exit_code == 2 and "bench.state.json: written for seed 7" in result.output
    elsewhere = tmp_path / "other.json"
    result = CliRunner().invoke(app, ["simulate", "rig", "--config", str(config), "--check", "--state", str(elsewhere)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("field", ["installed", "since"])
def test_a_state_file_time_beyond_the_calendar_in_utc_is_refused_in_one_line(tmp_path: Path, field: str) -> None:
    """0001-01-01T00:00:00+01:00 is in the year 0 in UTC: an OverflowError traceback from
    ``simulate rig --check`` (and from the run), not a refusal naming the file."""
    config = tmp_path / "rig.toml"
    config.write_text(RIG)
    edge = "0001-01-01T00:00:00+01:00"
    fault = {"id": 1, "meter": "M2", "config_index": None, "since": edge, "cleared": None, "spec": {"kind": "leak"}}
    document = {"format": 1, "seed": 7, "installed": "2026-01-01T00:00:00Z", "faults": [fault]}
    if field == "installed":
        document.update(installed=edge, faults=[])
    (tmp_path / "rig.state.json").write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["simulate", "rig", "--config", str(config), "--check"])
    assert result.exit_code == 2, result.exception
    said = "rig.state.json: not a rig state file: '0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 in UTC"
    assert said in result.output  # (before: "date value out of range", the time not named)
