"""Every text option and argument of every command refuses text that is invalid whatever the
command: exit 2 naming the option (or, where the command's contract is a runtime failure, exit 1 and
one ``error:`` line), no traceback, and nothing started.

tests/test_cli_fuzz.py fuzzes numbers, times and paths; this fuzzes the rest, walking the same tree:
every ``str`` option or argument (a single value, or one of many, or ``KEY=VALUE``) gets the empty
string, a blank, a newline, a NUL and 100 000 characters; then each kind its own: a URL one that is
no URL, a port beyond 65535, the wrong scheme and a broken one; a time zone one that is none; hex
that is odd, not hex or of the wrong length; ``KEY=VALUE`` without its key or its ``=``. A value some
option may legitimately take is an exception below, with its reason, option by option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from aquami.cli import app
from aquami.exit_codes import CONFIG
from tests.test_cli_fuzz import MINIMAL, SERVICES, Case, _args, _commands, _forked, _in_process
from tests.test_cli_fuzz import files as files  # the fixture, shared

#: Text invalid as any option's: nothing, a blank, a second line, a NUL, and far too much.
TEXTS = ["", " ", "a\nb", "a\x00b", "x" * 100_000]

#: Per kind of option, the values invalid whatever the command, besides TEXTS.
DATABASE_URLS = ["not a url", "postgresql://127.0.0.1:99999/x", "http://x", "postgresql://[::1"]
MQTT_URLS = ["not a url", "mqtt://127.0.0.1:99999", "http://x", "mqtt://[::1"]
HTTP_URLS = ["not a url", "http://127.0.0.1:99999", "mqtt://x", "http://[::1"]
ZONES = ["Mars/Olympus", "UTC+25"]
HEX = ["abc", "zz"]  # odd length, not hex
KEY_VALUES = ["=", "KEY", "=VALUE"]
HOSTS = ["256.1.1.1"]
ORIGINS = ["*", "app.example.org", "https://app.example.org/path", "https://app.example.org:99999"]
HOST_NAMES = ["*", "water.example.org:443", "https://water.example.org", "[::1]:8000", "fe80::1%eth0", "a..b"]

#: (command, option) -> its kind's values. An option not named here gets TEXTS alone.
KINDS: dict[tuple[str, str], list[str]] = {
    **{(c, "--database-url"): DATABASE_URLS for c in MINIMAL if "--database-url" in MINIMAL[c]},
    ("collector run", "--mqtt-url"): MQTT_URLS,
    ("demo", "--mqtt-url"): MQTT_URLS,
    ("simulate fault", "--rig"): HTTP_URLS,
    ("detect", "--timezone"): ZONES,
    ("collector timezone", "ZONE"): ZONES,
    ("decode mbus", "FRAMES"): HEX,
    ("decode wmbus", "FRAMES"): HEX,
    ("decode modbus", "REGISTERS"): HEX,
    # a key of 15 bytes: AES-128 takes 16
    ("decode wmbus", "--key"): [*KEY_VALUES, "M=" + "00" * 15, "M=abc", "M=zz" * 16],
    ("decode modbus", "--param"): KEY_VALUES,
    ("gateway scan", "--param"): KEY_VALUES,
    ("simulate fault", "--set"): [*KEY_VALUES, "rate=1=2"],
    ("demo", "--host"): HOSTS,
    ("server run", "--host"): HOSTS,
    ("server run", "--cors-origin"): ORIGINS,
    ("server run", "--allowed-host"): HOST_NAMES,
    ("simulate modbus-tcp", "--host"): HOSTS,
}

#: (command, option, value) valid after all, with why.
VALID: dict[tuple[str, str, str], str] = {
    **{
        (c, "--database-url", ""): "libpq's empty conninfo: the PG* variables, else the local socket "
        "(tests/test_database_url.py holds it a good URL)"
        for c in MINIMAL
        if "--database-url" in MINIMAL[c] and c != "demo"  # the demo's empty one was its embedded database
    },
}

#: (command, option) refused, as the command's contract says, with exit 1 and one ``error:`` line.
EXIT_1 = {
    **{
        (c, "--database-url"): "a URL libpq cannot read is the database's refusal (aquami/database_url.py)"
        for c in MINIMAL
        if "--database-url" in MINIMAL[c]
    },
}

#: Of EXIT_1, those said with another code than 1: the long-running commands' ``EX_CONFIG``, which
#: their service units do not start again on (aquami/exit_codes.py).
EXIT_CODES = {(c, "--database-url"): CONFIG for c in ("collector run", "server run")}

#: (command, argument) whose bad value is a record of the command's output, as its good one is: exit 1,
#: each line a JSON object with an ``error`` (``aquami decode``: one object per frame, a frame that
#: does not decode said in its place, so a stream of them goes on past one bad frame).
JSON_ERRORS = {
    ("decode mbus", "FRAMES"): "one object per frame: a bad one is an error object, exit 1",
    ("decode modbus", "REGISTERS"): "one object per register block: a bad one is an error object, exit 1",
    ("decode wmbus", "FRAMES"): "one object per telegram: a bad one is an error object, exit 1",
}

#: Text options the numbers-times-paths test already fuzzes as times.
TIME_TEXTS = {("simulate modbus-tcp", "--installed")}


def _name(param: Any) -> str:
    if param.param_type_name == "option":
        return str(param.opts[0])
    return str(param.metavar or param.name.upper())


def _texts(command: str, param: Any) -> Iterator[str]:
    """The values of a text option: TEXTS and its kind's; none for an option of other type."""
    annotation = param.type_descriptor.annotation
    name = _name(param)
    if (command, name) in TIME_TEXTS or annotation not in (str, list[str], str | None):
        return
    yield from TEXTS
    yield from KINDS.get((command, name), [])


def _cases(*, but_valid: bool = True) -> list[Case]:
    return [
        Case(command, _name(param), value)
        for command, click_command in _commands(typer.main.get_command(app))
        for param in click_command.params
        for value in _texts(command, param)
        if not (but_valid and (command, _name(param), value) in VALID)
    ]


CASES = _cases()


def _id(case: Case) -> str:
    value = case.value if len(case.value) < 40 else f"{case.value[:8]}…({len(case.value)})"
    return f"{case.command}-{case.option}={value!r}"


#: An argument's value in MINIMAL, which the case's value replaces; an argument not there (a zone
#: to set, meters to assign) is put first.
ARGUMENTS = {
    ("collector assign-meters", "METER_IDS"): "M1",
    ("decode mbus", "FRAMES"): MINIMAL["decode mbus"][0],
    ("decode modbus", "REGISTERS"): "0001",
    ("decode wmbus", "FRAMES"): "00",
    ("server revoke-key", "KEY_ID"): MINIMAL["server revoke-key"][0],
    ("simulate fault", "METER"): "M1",
    ("simulate fault", "KIND"): "leak",
}


def _text_args(case: Case, tmp: Path) -> list[str]:
    """The minimal arguments with the case's value in its option's or argument's place."""
    if case.option.startswith("-"):
        return _args(case, tmp)
    args = list(MINIMAL[case.command])
    example = ARGUMENTS.get((case.command, case.option))
    if example is None:
        args.insert(0, case.value)
    else:
        args[args.index(example)] = case.value
    return [*case.command.split(), *args]


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_invalid_text_is_refused_by_name(case: Case, files: Path) -> None:
    args = _text_args(case, files)
    outcome = (_forked if case.command in SERVICES else _in_process)(args)
    assert outcome.exit_code is not None, "accepted an invalid value: still running at the timeout"
    assert "Traceback" not in outcome.output, outcome.output[:2000]
    if (case.command, case.option) in JSON_ERRORS:
        assert outcome.exit_code == 1, outcome.output[:2000]
        records = [json.loads(line) for line in outcome.output.strip().splitlines()]
        assert records and all("error" in record for record in records), outcome.output[:2000]
        return
    if (case.command, case.option) in EXIT_1:
        lines = outcome.output.strip().splitlines()
        assert outcome.exit_code == EXIT_CODES.get((case.command, case.option), 1), outcome.output[:2000]
        assert len(lines) == 1 and lines[0].startswith("error: "), outcome.output[:2000]
        assert len(lines[0]) < 1000, f"one line, but {len(lines[0])} characters: {lines[0][:200]}…"
        return
    assert outcome.exit_code == 2, outcome.output[:2000]
    option = re.escape(case.option)
    flags = 0 if case.option.startswith("-") else re.IGNORECASE
    assert re.search(rf"Invalid value for '?{option}'?[:/ ]", outcome.output, flags), outcome.output[:2000]
    assert len(outcome.output) < 5000, f"the refusal echoes the value whole: {len(outcome.output)} characters"


def test_every_text_exception_is_one() -> None:
    """The tables name no command or option the tree does not have (a rename would make them blind)."""
    every = {(c.command, c.option) for c in _cases(but_valid=False)}
    assert set(KINDS) | set(EXIT_1) | set(ARGUMENTS) | set(JSON_ERRORS) <= every
    assert set(VALID) <= {tuple(c) for c in _cases(but_valid=False)}
