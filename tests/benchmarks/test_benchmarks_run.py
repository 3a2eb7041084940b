"""Every benchmark runs, at its smallest meaningful size, and prints its same-run baseline comparison.

No benchmark ran in CI, so an API change in aquami could break one unseen until someone measured.
Each ``benchmarks/bench_*.py`` is run here as a user runs it (``python -m benchmarks.bench_X``, in a
subprocess) with options that shrink it, and must exit 0 having printed the line comparing aquami
with its baseline, a figure included. Nothing here is timed: how fast aquami is, the benchmarks
measure; this checks only that they still do. A benchmark that needs TimescaleDB or Mosquitto gets
them as the other tests do (tests/services.py): the session's TimescaleDB server is handed to it in
``AQUAMI_TEST_DATABASE_URL``, and it starts its own Mosquitto with ``MosquittoBroker``, after the
``mosquitto`` fixture has shown the broker is installed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
#: Under pytest-timeout's 300 s, so a benchmark that hangs fails with its output, not a bare timeout.
TIMEOUT_S = 240
NUMBER = r"\d[\d,]*(?:\.\d+)?"  # 0.83, 1,591, 12


@dataclass(frozen=True)
class Smoke:
    """How to run one benchmark small, and the line (a regular expression, its figure included)
    that shows it compared aquami with its baseline in the same run."""

    args: tuple[str, ...]
    comparison: str
    database: bool = False
    mosquitto: bool = False


SMOKE: dict[str, Smoke] = {
    "bench_account_search": Smoke(
        ("--agreements", "2000"),
        rf"account search with the index: median {NUMBER} ms against {NUMBER} ms without: {NUMBER}x faster",
        database=True,
    ),
    "bench_billing_move_out": Smoke(
        ("--units", "20", "--days", "3", "--pages", "2"),
        rf"changes_page against the baseline: pages after the first {NUMBER}x faster \(median\), "
        rf"the first page {NUMBER}x",
        database=True,
    ),
    "bench_broker_size_limit": Smoke(
        ("--seconds", "10", "--readings", "200"),
        rf"MQTT 5 +message_size_limit 4096 +not told the limit: all delivered {NUMBER}x the baseline's time",
        mosquitto=True,
    ),
    "bench_bulk_leaks": Smoke(
        ("--blocks", "10"),
        rf"\| as households' meters \(continuous flow\), the baseline \| {NUMBER} \({NUMBER}/{NUMBER}\)",
    ),
    "bench_care_desk": Smoke(
        ("--enquiries", "2000"),
        rf"priority=urgent +with the index: median +{NUMBER}x, worst page +{NUMBER}x faster than without",
        database=True,
    ),
    "bench_care_desk_one_moment": Smoke(
        ("--enquiries", "300", "--pages", "2", "--repeat", "2"),
        rf"care desk page in one moment: median {NUMBER} ms against {NUMBER} ms query by query: {NUMBER}x",
        database=True,
    ),
    "bench_determinants": Smoke(
        ("--accounts", "40", "--repeat", "1"),
        rf"determinants in one scan against the baseline: query {NUMBER}x faster, request {NUMBER}x \(median\)",
        database=True,
    ),
    "bench_detection": Smoke(
        ("--quick", "--meters", "500", "--meter-days", "3000", "--loop-dmas", "1"),
        rf"Ratio loop / all at once: {NUMBER}× wall-clock, {NUMBER}× CPU time",
    ),
    "bench_detection_fetch": Smoke(
        ("--meters", "50", "--repeat", "1"),
        rf"plain COPY fetch {NUMBER} s: fetch_block is {NUMBER}× faster",
        database=True,
    ),
    "bench_detection_job": Smoke(
        ("--meters", "300", "--days", "0.25"),
        rf"ratio: {NUMBER} \(goal: about 1\)",
    ),
    # 12 days: LeakDB's night-flow algorithm needs 10 days of history before it labels any
    "bench_district_network": Smoke(
        ("--scenarios", "1", "--days", "12"),
        rf"\| LeakDB MNF algorithm, same inlets \| {NUMBER} \| {NUMBER} \|",
    ),
    "bench_end_to_end": Smoke(
        ("--seconds", "1"),
        rf"bare pymodbus loop over the same meters \(poll ceiling\) +{NUMBER} +{NUMBER}",
        database=True,
        mosquitto=True,
    ),
    "bench_fleet": Smoke(
        ("--meters", "5", "--days", "2", "--million-meters", "100", "--million-days", "10"),
        rf'"speedup": {NUMBER}',
    ),
    "bench_gateway": Smoke(
        ("--readings", "1000", "--polling-seconds", "0.5", "--mbus-seconds", "1", "--memory-seconds", "2"),
        rf"ratio gateway / bare paho +{NUMBER}",
        mosquitto=True,
    ),
    "bench_head": Smoke(
        ("--rounds", "1"),
        rf"/meters/M1/readings\?limit=10000 +GET +{NUMBER} ms +HEAD +{NUMBER} ms +HEAD/GET +{NUMBER}",
        database=True,
    ),
    "bench_ingest": Smoke(
        (
            "--meters",
            "100",
            "--hours",
            "2",
            "--batch",
            "100",
            "--query-meters",
            "20",
            "--query-days",
            "2",
            "--repeat",
            "1",
        ),
        rf"best of 1: raw COPY {NUMBER}/s, MQTT → rows {NUMBER}/s = {NUMBER}%",
        database=True,
        mosquitto=True,
    ),
    "bench_key_check": Smoke(
        ("--calls", "50", "--rounds", "1"),
        rf"unknown id against the baseline \(known id, wrong secret\): {NUMBER}x its time",
        database=True,
    ),
    "bench_meter_page_days": Smoke(
        ("--meters", "1", "--days", "60", "--repeat", "3"),
        rf"meter page's days with 60 days of history: median {NUMBER} ms against {NUMBER} ms with 30: {NUMBER}x",
        database=True,
    ),
    "bench_meter_page_plans": Smoke(
        ("--meters", "1", "--days", "60", "--repeat", "3"),
        rf"meter page with bounded reads: median {NUMBER} ms against {NUMBER} ms unbounded: {NUMBER}x",
        database=True,
    ),
    "bench_meters_list_plans": Smoke(
        ("--meters", "2", "--days", "60", "--repeat", "3"),
        rf"meters list with bounded reads: median {NUMBER} ms against {NUMBER} ms unbounded: {NUMBER}x",
        database=True,
    ),
    "bench_meter_page_one_moment": Smoke(
        ("--meters", "1", "--days", "7", "--repeat", "3"),
        rf"meter page in one moment: median {NUMBER} ms against {NUMBER} ms query by query: {NUMBER}x",
        database=True,
    ),
    "bench_mbus_decode": Smoke(
        ("--rounds", "1", "--seconds", "0.01"),
        rf"aquami, layouts seen before \(plans cached\) +{NUMBER} frames/s +{NUMBER}x "
        r"(?:pyMeterBus load\(\)|aquami \(Construct reference path\))",
    ),
    "bench_meter_rollout": Smoke(
        ("--quick", "--meters", "500"),
        rf"Recorded against unrecorded: recall {NUMBER} against {NUMBER}",
    ),
    "bench_nem12": Smoke(
        ("--meters", "20", "--days", "2", "--repeat", "1"),
        rf"NEM12 export against the baselines: {NUMBER}x the naive export's time, {NUMBER}x the raw COPY's",
        database=True,
    ),
    "bench_open311_requests": Smoke(
        ("--enquiries", "2000", "--posts", "5"),
        rf"an app's own newest 1,000 against customer care's: {NUMBER}x the time",
        database=True,
    ),
    "bench_request_json": Smoke(
        ("--rounds", "1", "--number", "10"),
        rf"64 KiB of small objects +{NUMBER} B +json.loads +{NUMBER} us +loads_exact +{NUMBER} us +ratio +{NUMBER}",
    ),
    "bench_server_start": Smoke(
        ("--rounds", "1", "--parallel", "2", "--outage", "1"),
        rf"listening, against the process's own imports \({NUMBER} s\): database present {NUMBER} s",
        database=True,
    ),
    "bench_simulators": Smoke(
        ("--meters", "50", "--seconds", "0.5", "--clients", "2", "--reads", "2", "--paced-meters", "50"),
        rf"ratio simulator / baseline: {NUMBER}",
    ),
    "bench_test_database": Smoke(
        ("--databases", "2", "--rounds", "1"),
        rf"copied from the template: median {NUMBER} ms against {NUMBER} ms migrating \(the baseline\): "
        rf"{NUMBER}x faster",
        database=True,
    ),
    "bench_vee": Smoke(
        ("--meters", "50", "--repeat", "1"),
        rf"the query before {NUMBER} s: load_series is {NUMBER}× faster",
        database=True,
    ),
    "bench_wmbus_decode": Smoke(
        ("--meters", "10", "--rounds", "1"),
        rf"ratio aquami/\w+: {NUMBER}",
    ),
}


def _benchmarks_in_folder() -> list[str]:
    return sorted(path.stem for path in BENCHMARKS.glob("bench_*.py"))


def test_every_benchmark_in_the_folder_has_a_smoke_run() -> None:
    """A new ``bench_*.py`` not added to SMOKE would run nowhere again: fail until it is."""
    in_folder = set(_benchmarks_in_folder())
    assert in_folder, f"no bench_*.py in {BENCHMARKS}"
    missing, gone = sorted(in_folder - SMOKE.keys()), sorted(SMOKE.keys() - in_folder)
    assert not missing, f"add a small run of {', '.join(missing)} to SMOKE in {Path(__file__).name}"
    assert not gone, f"SMOKE names benchmarks that are no longer in {BENCHMARKS}: {', '.join(gone)}"


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Run:
    command: list[str]
    returncode: int | None  # None: stopped after ``timeout`` seconds
    stdout: str
    stderr: str

    def shown(self) -> str:
        ran = " ".join(self.command[1:])
        return f"{ran}\n--- stdout\n{_tail(self.stdout)}\n--- stderr\n{_tail(self.stderr)}"


def _run_benchmark(name: str, *args: str, timeout: float, env: dict[str, str] | None = None) -> Run:
    """``python -m benchmarks.<name> args`` in its own session. Past ``timeout`` the whole process
    group is killed: the workers and servers a benchmark starts (district_network's process pool,
    the simulators' servers) would otherwise outlive it."""
    command = [sys.executable, "-m", f"benchmarks.{name}", *args]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return Run(command, process.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return Run(command, None, stdout, stderr)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.services] if smoke.database or smoke.mosquitto else [])
        for name, smoke in sorted(SMOKE.items())
    ],
)
def test_the_benchmark_runs_small_and_prints_its_baseline_comparison(name: str, request: pytest.FixtureRequest) -> None:
    smoke = SMOKE[name]
    env = dict(os.environ)
    if smoke.database:
        env["AQUAMI_TEST_DATABASE_URL"] = request.getfixturevalue("timescale_admin_url")
    if smoke.mosquitto:
        request.getfixturevalue("mosquitto")  # fails, saying how to install it, where it is missing
    run = _run_benchmark(name, *smoke.args, timeout=TIMEOUT_S, env=env)
    assert run.returncode is not None, f"did not finish in {TIMEOUT_S} s: {run.shown()}"
    assert run.returncode == 0, f"exit {run.returncode}: {run.shown()}"
    assert re.search(smoke.comparison, run.stdout), f"no line matching {smoke.comparison!r}: {run.shown()}"


@pytest.mark.parametrize("name", _benchmarks_in_folder())
def test_the_benchmark_refuses_an_option_it_does_not_know(name: str) -> None:
    """Seven benchmarks parsed their options with ``parse_known_args`` and ran on past one they did
    not know, at full size (``bench_detection --metres 500``, a typo, ran 10,000 meters): a smoke run
    above whose shrinking option was renamed would have run for minutes unseen. Now refused."""
    run = _run_benchmark(name, "--no-such-option", timeout=60)
    assert run.returncode is not None, f"ran on for 60 s instead of refusing the option: {run.shown()}"
    assert run.returncode == 2, f"exit {run.returncode}: {run.shown()}"
    assert "unrecognized arguments: --no-such-option" in run.stderr
