"""Every option of every command refuses a value that is invalid whatever the command: exit 2, naming
the option, no traceback, and nothing started.

The command tree is walked (``typer.main.get_command(app)``), so an option added later is fuzzed by
its click type and name without anyone remembering to: a float gets ``nan``, ``inf``, ``-inf`` and
``1e309``; an int one beyond any range, a fraction and a word; a time-like option (``--from``,
``--at``, ``--installed``…) a number, a month 13 and a word; a file read a path that is not there and
a folder; a file written one in a folder that is not there. The other required arguments come from
a small table of minimal valid ones per command. A value some option may legitimately take is an
exception below, with its reason, option by option.

Commands that would start a service (a server, a broker, a simulator) on a value accepted by mistake
run in a forked child with a short timeout: running out of time is "accepted an invalid value". The
others run in-process with CliRunner.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import typer
from typer.testing import CliRunner

from aquami.cli import app

REPO = Path(__file__).resolve().parents[1]
NO_DATABASE = "postgresql://127.0.0.1:1/none"  # a closed port: every connection is refused
NO_BROKER = "mqtt://127.0.0.1:1"

#: Minimal valid arguments of each command; ``{tmp}`` is the fixture's folder of tiny valid files.
MINIMAL: dict[str, list[str]] = {
    "bill determinants": ["--period", "2026-01", "--database-url", NO_DATABASE],
    "bill nem12": ["--period", "2026-01", "--database-url", NO_DATABASE],
    "collector assign-meters": ["M1", "--database-url", NO_DATABASE],
    "collector consumption": ["--from", "2026-01-01", "--to", "2026-01-02", "--database-url", NO_DATABASE],
    "collector detect": ["--database-url", NO_DATABASE],
    "collector leave-group": [
        "--client-id",
        "c1",
        "--shared-group",
        "g",
        "--mqtt-url",
        NO_BROKER,
        "--database-url",
        NO_DATABASE,
    ],
    "collector migrate": ["--database-url", NO_DATABASE],
    "collector run": ["--mqtt-url", NO_BROKER, "--database-url", NO_DATABASE],
    "collector timezone": ["--database-url", NO_DATABASE],
    "collector vee": ["--from", "2026-01-01", "--to", "2026-01-02", "--database-url", NO_DATABASE],
    "decode mbus": ["6808086873fd5100000000000016"],
    "decode modbus": ["--profile", "smart_water_meter", "0001"],
    "decode wmbus": ["00"],
    # never the embedded database and broker: a value accepted by mistake reaches a closed port
    "demo": ["--database-url", NO_DATABASE, "--mqtt-url", NO_BROKER, "--port", "0"],
    "detect": ["--readings", "{tmp}/r.csv", "--meters", "{tmp}/m.csv", "--out", "{tmp}/a.json"],
    "gateway check": ["{tmp}/gateway.toml"],
    "gateway run": ["{tmp}/gateway.toml"],
    "gateway scan": ["{tmp}/gateway.toml", "--bus", "tcp-1"],
    "server create-key": ["--name", "me", "--role", "reader", "--database-url", NO_DATABASE],
    "server list-keys": ["--database-url", NO_DATABASE],
    "server register-accounts": ["{tmp}/accounts.csv", "--database-url", NO_DATABASE],
    "server register-meters": ["{tmp}/m.csv", "--database-url", NO_DATABASE],
    "server revoke-key": ["aqk_0123456789ab", "--database-url", NO_DATABASE],
    "server sign-in-link": ["--key-id", "0123456789ab", "--database-url", NO_DATABASE],
    "server run": ["--database-url", NO_DATABASE, "--port", "0"],
    "server withdraw-agreement": [
        *("--service-point-id", "SP-1", "--start-at", "2026-01-01", "--reason", "typed wrong", "--by", "me"),
        *("--database-url", NO_DATABASE),
    ],
    "server withdraw-installation": [
        *("--meter-id", "M1", "--installed-at", "2026-01-01", "--reason", "typed wrong", "--by", "me"),
        *("--database-url", NO_DATABASE),
    ],
    "simulate fault": ["M1", "leak", "--rig", "http://127.0.0.1:1"],
    "simulate modbus-tcp": ["--port", "0"],
    "simulate rig": ["--config", "{tmp}/rig.toml", "--no-table"],
}

#: What would run on until stopped on a value accepted by mistake.
SERVICES = {"collector run", "demo", "gateway run", "server run", "simulate modbus-tcp", "simulate rig"}

#: Files each command reads, by option (or argument) name.
INPUT_PATHS = {
    ("collector run", "--vee-config"),
    ("collector vee", "--config"),
    ("detect", "--readings"),
    ("detect", "--meters"),
    ("gateway check", "CONFIG"),
    ("gateway run", "CONFIG"),
    ("gateway scan", "CONFIG"),
    ("server register-accounts", "ACCOUNTS"),
    ("server register-meters", "METERS"),
    ("simulate rig", "--config"),
}
#: Files each command writes.
OUTPUT_PATHS = {
    ("bill determinants", "--out"),
    ("bill nem12", "--out"),
    ("collector detect", "--out"),
    ("collector run", "--ready-file"),
    ("detect", "--out"),
    ("detect", "--balance"),
    ("gateway scan", "--output"),
    ("simulate rig", "--gateway-config"),
}
#: Paths neither read as an input nor written as one file, so neither family of values applies.
OTHER_PATHS = {
    ("demo", "--data-dir"): "a folder made if missing: one that is not there is valid",
    ("simulate rig", "--state"): "read if there, made if not: a missing one is a fresh rig",
}

FLOATS = ["nan", "inf", "-inf", "1e309"]
INTS = ["99999999999999999999", "-99999999999999999999", "1.5", "x"]
TIMES = ["12.5", "2026-13-01", "x", "0001-01-01T00:00:00+01:00"]  # the last in the year 0 in UTC
#: Option words that make an option time-like.
TIME_WORDS = {"from", "to", "since", "installed", "start", "end", "at", "until"}

#: Options whose name has a time word but that are no time.
NOT_TIMES = {("collector assign-meters", "--from-gateway"): "a gateway's id: every meter from that gateway"}

#: (command, option, value) that is valid after all, with why.
VALID: dict[tuple[str, str, str], str] = {
    ("simulate modbus-tcp", "--seed", "99999999999999999999"): "numpy seeds from any non-negative integer, "
    "however long (as the rig file's seed): a 20-digit seed is a seed",
}

#: (command, option) refused, as the command's help says, with exit 1 and a one-line ``error:``.
EXIT_1 = {
    ("collector run", "--ready-file"): "a ready file that cannot be written is the machine's refusal (its docs)",
}


class Case(NamedTuple):
    command: str
    option: str  # as the error names it: --opt, or the argument's METAVAR
    value: str


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    if hasattr(command, "commands"):  # a group
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def _values(command: str, param: Any, name: str) -> list[str]:
    """The values invalid whatever the command, by the option's type and name."""
    annotation = param.type_descriptor.annotation
    words = set(name.lstrip("-").lower().split("-"))
    if annotation is datetime or (words & TIME_WORDS and (command, name) not in NOT_TIMES):
        return TIMES
    if annotation is bool or param.multiple or param.nargs != 1:
        return []
    if annotation is float:
        return FLOATS
    if annotation is int:
        return INTS
    if (command, name) in INPUT_PATHS:
        return ["{tmp}/missing.csv", "{tmp}"]
    if (command, name) in OUTPUT_PATHS:
        return ["{tmp}/nowhere/x.out"]
    if annotation is Path or annotation == Path | None:
        assert (command, name) in OTHER_PATHS, f"{command} {name}: say whether it is read or written"
    return []


def _cases(*, but_valid: bool = True) -> list[Case]:
    cases = []
    for command, click_command in _commands(typer.main.get_command(app)):
        assert command in MINIMAL, f"{command}: add its minimal valid arguments to MINIMAL"
        for param in click_command.params:
            name = param.opts[0] if param.param_type_name == "option" else param.name.upper()
            if param.param_type_name == "argument" and param.metavar:
                name = param.metavar
            cases += [
                Case(command, name, value)
                for value in _values(command, param, name)
                if not (but_valid and (command, name, value) in VALID)
            ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny valid inputs: readings, meters, accounts, a gateway and a rig configuration."""
    tmp = tmp_path_factory.mktemp("cli-fuzz")
    (tmp / "r.csv").write_text("meter_id,ts,volume_m3\nM,2026-01-01T00:00:00Z,1\nM,2026-01-01T01:00:00Z,1\n")
    (tmp / "m.csv").write_text("meter_id,dma,role\nM,D,customer\n")
    (tmp / "accounts.csv").write_text("account_id,name,service_point_id,start_at\nA1,Ann,SP1,2026-01-01\n")
    gateway = (REPO / "gateway/examples/gateway.toml").read_text()
    (tmp / "gateway.toml").write_text(gateway)
    rig = (REPO / "simulators/examples/rig.toml").read_text()
    (tmp / "rig.toml").write_text(rig)
    return tmp


def _args(case: Case, tmp: Path) -> list[str]:
    """The minimal arguments with the case's value in its option's place (replacing or added)."""
    args = [a.replace("{tmp}", str(tmp)) for a in MINIMAL[case.command]]
    value = case.value.replace("{tmp}", str(tmp))
    if case.option.startswith("-"):
        if case.option in args:
            args[args.index(case.option) + 1] = value
        else:
            args += [case.option, value]
    else:  # an argument: the minimal arguments' first is the command's first argument
        positional = next(i for i, a in enumerate(args) if not a.startswith("-"))
        args[positional] = value
    return [*case.command.split(), *args]


class Outcome(NamedTuple):
    exit_code: int | None  # None: still running at the timeout
    output: str


def _in_process(args: list[str], cli: typer.Typer = app) -> Outcome:
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "400"})
    said = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # the command got past its checks: the real one said a traceback or a database's error
        said += f"\naccepted, then raised {type(result.exception).__name__}: {result.exception}"
    return Outcome(result.exit_code, said)


#: Seconds a service command gets to refuse: a refusal takes well under one.
TIMEOUT_S = 8.0


def _forked(args: list[str], cli: typer.Typer = app) -> Outcome:
    """The command in a child of its own (its own process group, killed whole at the timeout), so a
    value accepted by mistake starts nothing that outlives the test. Forked, not spawned: no import.

    The child's outcome is read while it runs: a pipe holds 64 KB, and a child saying more waited
    for room to write until the timeout, reported as still running whatever it had done."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setpgid(0, 0)
            os.close(read_end)
            outcome = _in_process(args, cli)
            with os.fdopen(write_end, "w") as pipe:
                json.dump(outcome._asdict(), pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + TIMEOUT_S
    chunks: list[bytes] = []
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while (left := deadline - time.monotonic()) > 0:
            if select.select([pipe], [], [], left)[0]:
                chunk = pipe.read(1 << 16)
                if not chunk:  # the child closed its end: it has said all it will
                    break
                chunks.append(chunk)
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return Outcome(None, "")
    said = b"".join(chunks).decode()
    return Outcome(**json.loads(said)) if said else Outcome(-1, "the child died without a word")


def test_a_forked_child_saying_more_than_a_pipe_holds_is_reported_as_it_ended() -> None:
    """A child that says 200 KB and exits 2 is reported so, with all it said: before, it waited for
    room in the pipe (64 KB), which was read only once the child had exited, and was reported as
    still running at the timeout."""
    talker = typer.Typer()
    said = "".join(f"line {n:06d}\n" for n in range(200_000 // 12 + 1))

    @talker.command()
    def talk() -> None:
        typer.echo(said, nl=False)
        raise typer.Exit(2)

    assert len(said) >= 200_000
    assert _forked([], talker) == Outcome(2, said)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.command}-{c.option}={c.value}" for c in CASES])
def test_an_invalid_value_is_refused_by_name(case: Case, files: Path) -> None:
    args = _args(case, files)
    outcome = (_forked if case.command in SERVICES else _in_process)(args)
    assert outcome.exit_code is not None, f"accepted an invalid value: still running after {TIMEOUT_S:g} s"
    assert "Traceback" not in outcome.output, outcome.output
    if (case.command, case.option) in EXIT_1:
        assert outcome.exit_code == 1, outcome.output
        lines = outcome.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), outcome.output
        assert case.option in lines[0] or case.value.replace("{tmp}", str(files)) in lines[0], outcome.output
        return
    assert outcome.exit_code == 2, outcome.output
    option = re.escape(case.option)
    flags = 0 if case.option.startswith("-") else re.IGNORECASE  # typer names an argument 'meters', or METERS
    assert re.search(rf"Invalid value for '?{option}'?[:/ ]", outcome.output, flags), outcome.output


def test_every_command_is_fuzzed_and_every_exception_is_one() -> None:
    """The tables name no command or option the tree does not have (a rename would make them blind)."""
    tree = dict(_commands(typer.main.get_command(app)))
    assert set(MINIMAL) == set(tree)
    assert INPUT_PATHS | OUTPUT_PATHS | set(EXIT_1) <= {(c.command, c.option) for c in CASES}
    assert set(VALID) <= {tuple(c) for c in _cases(but_valid=False)}
    options = {
        (c, p.opts[0] if p.param_type_name == "option" else p.name.upper())
        for c, cmd in tree.items()
        for p in cmd.params
    }
    assert set(OTHER_PATHS) | set(NOT_TIMES) <= options
