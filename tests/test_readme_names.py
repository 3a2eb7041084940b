"""Every command, option, endpoint and ``AQUAMI_*`` variable README.md names exists, and the reverse.

Nothing else checks the prose against the code, so an option renamed or an endpoint moved left the
README naming one that is not there. Each failure names the README line and the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from starlette.routing import Match
from typer.core import TyperGroup

import aquami.cli
from server.app import create_app
from tests.readme_names import (
    all_options,
    bare_paths,
    command_lines,
    endpoints,
    envvars,
    gateway_keys,
    leading_words,
    options_in,
    readme_text,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("aquami", "collector", "server", "gateway", "simulators", "firmware_protocols", "tests", "scripts")

# Commands and options README need not name, each with why.
UNNAMED_OPTIONS = {
    "--help": "every command has it; README says so once (`aquami demo --help`)",
}
# Rows of the parts table that speak of every command's options, not their own command's.
ROWS_OF_EVERY_COMMAND = {"| database schema": "every command reads AQUAMI_DATABASE_URL and checks its arguments first"}
# Paths README names alone that are no route, each with why.
NOT_ROUTES = {"/open311/v2": "the base Open311's paths are under, named as such"}
# Options README gives other programs than aquami.
OTHER_TOOLS_OPTIONS = {
    "--data-urlencode": "curl's, in the Open311 example",
    "--meter-days": "a benchmark's (python -m benchmarks.…)",
    "--days": "a benchmark's",
    "--memory-seconds": "a benchmark's",
    "--paced-meters": "a benchmark's",
    "--seeds": "a benchmark's (python -m benchmarks.reverse_flow_errors)",
    "--events": "a benchmark's",
    "--backward-registers": "a benchmark's",
    "--look-alikes": "a benchmark's (python -m benchmarks.burst_errors)",
    "--causes": "a benchmark's (python -m benchmarks.reverse_flow_errors)",
    "--kinds": "a benchmark's (python -m benchmarks.causal_check)",
    "--interval-minutes": "a benchmark's (python -m benchmarks.bench_detection)",
    "--meters-only": "a benchmark's (python -m benchmarks.bench_care_desk)",
    "--stop": "a benchmark's (python -m benchmarks.bench_broker_size_limit)",
    "--history": "a benchmark's (python -m benchmarks.mbus_late_answer_cut)",
    "--jit-above-cost": "a benchmark's (python -m benchmarks.server_queries_jit)",
    "--dist": "pytest-xdist's, in the Tests section",
    "--system": "useradd's, in Running as a service",
    "--home-dir": "useradd's, in Running as a service",
    "--now": "systemctl's, in Running as a service",
    "--wait": "systemd-run's, in Running as a service",
    "--pipe": "systemd-run's, in Running as a service",
    "--uid": "systemd-run's, in Running as a service",
}


@pytest.fixture(scope="module")
def text() -> str:
    return readme_text()


@pytest.fixture(scope="module")
def root() -> TyperGroup:
    command = typer.main.get_command(aquami.cli.app)
    assert isinstance(command, TyperGroup)
    return command


def _walk(group: TyperGroup, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, TyperGroup):
            yield from _walk(command, (*path, name))


def _option_names(command: Any) -> list[tuple[str, ...]]:
    """Each option's long names (a flag pair's two), ``--help`` among them."""
    names: list[tuple[str, ...]] = [("--help",)]
    for parameter in command.params:
        if parameter.param_type_name == "option":
            names.append(tuple(name for name in (*parameter.opts, *parameter.secondary_opts) if name.startswith("--")))
    return names


def _options(command: Any) -> set[str]:
    return {name for names in _option_names(command) for name in names}


def _resolve(root: TyperGroup, words: list[str]) -> tuple[list[tuple[tuple[str, ...], Any]], str | None]:
    """The commands ``words`` name (``run|check`` names two), or why they name none.

    A word after a group must name one of its sub-commands (no group here takes arguments); after a
    command, the words are its arguments (``aquami gateway run CONFIG``)."""
    reached: list[tuple[tuple[str, ...], Any]] = [((), root)]
    for depth, word in enumerate(words):
        groups = [(path, command) for path, command in reached if isinstance(command, TyperGroup)]
        if not groups:
            break
        alternatives = word.split("|")
        nxt = [
            ((*path, name), group.commands[name])
            for path, group in groups
            for name in alternatives
            if name in group.commands
        ]
        missing = [name for name in alternatives if not any(name in group.commands for _, group in groups)]
        if nxt and missing:
            return [], f"no sub-command {missing} under `{' '.join(('aquami', *groups[0][0]))}`"
        if not nxt:
            takes_arguments = any(p.param_type_name == "argument" for _, group in groups for p in group.params)
            if depth == 0 or not takes_arguments:  # a group here takes none: ``collector runn`` is a typo
                return [], f"no sub-command `{word}` under `{' '.join(('aquami', *groups[0][0]))}`"
            break
        reached = nxt
    return reached, None


def command_problems(text: str, root: TyperGroup) -> list[str]:
    """Each ``aquami …`` line naming a sub-command or an option its command does not have."""
    wrong = []
    for line in command_lines(text):
        words = leading_words(line.words)
        if not words:
            continue  # "-o aquami /mnt/sd/aquami" (a user), "TO aquami CONTEXT:" (a log line)
        reached, why = _resolve(root, words)
        if why:
            wrong.append(f"README.md:{line.line}: `aquami {' '.join(line.words)}`: {why}")
            continue
        known = set().union(*(_options(command) for _, command in reached))
        for option in options_in(line.words):
            if option not in known:
                paths = " or ".join("aquami " + " ".join(path) for path, _ in reached)
                wrong.append(f"README.md:{line.line}: `{paths}` has no option {option}")
    return wrong


def unknown_option_problems(text: str, root: TyperGroup) -> list[str]:
    """Each ``--option`` in README, wherever it stands, that no ``aquami`` command has: prose names
    an option apart from its command line (``--shared-group`` in the collector's row)."""
    known = set().union(*(_options(command) for _, command in _walk(root)))
    return [
        f"README.md:{line}: no aquami command has {option}"
        for line, option, _text in all_options(text)
        if option not in known and option not in OTHER_TOOLS_OPTIONS
    ]


def row_option_problems(text: str, root: TyperGroup) -> list[str]:
    """Each option in a table row whose second cell is an ``aquami`` command (the parts table in
    "Pointing the parts at real services") that none of the row's commands has: the row is that
    command's settings. The database schema row is left out, as it speaks of every command's."""
    wrong = []
    for number, line in enumerate(text.splitlines(), 1):
        cells = line.split(" | ")
        if not line.startswith("| ") or len(cells) < 3 or "`aquami " not in cells[1]:
            continue
        if cells[0] in ROWS_OF_EVERY_COMMAND:
            continue
        reached = [
            found for named in command_lines(cells[1]) for found in _resolve(root, leading_words(named.words))[0]
        ]
        known = set().union(*(_options(command) for _, command in reached))
        for option in options_in((" | ".join(cells[2:]),)):
            if option not in known:
                paths = " or ".join("aquami " + " ".join(path) for path, _ in reached)
                wrong.append(f"README.md:{number}: `{paths}` has no option {option}")
    return wrong


def endpoint_problems(text: str, app: Any) -> list[str]:
    return [
        f"README.md:{found.line}: no route {found.method} {found.path}"
        for found in endpoints(text)
        if not _routed(app, found.method, found.path)
    ]


def bare_path_problems(text: str, app: Any) -> list[str]:
    """Each path README names alone, without a method, that no route has for any method."""
    return [
        f"README.md:{line}: no route for {path}"
        for line, path in bare_paths(text)
        if path not in NOT_ROUTES and not _routed(app, "GET", path, partly=True)
    ]


def envvar_problems(text: str, code: str) -> list[str]:
    return [f"README.md:{line}: nothing reads {name}" for line, name in envvars(text) if name not in code]


def gateway_key_problems(text: str, parser: str) -> list[str]:
    """Each ``[section] key`` of the gateway's TOML that README names and gateway/config.py does not
    read (it reads every name as a string literal: ``top.table("mqtt")``, ``table.text("url")``)."""
    return [
        f"README.md:{line}: gateway/config.py reads no {name!r} ([{section}] {key})".replace(" ]", "]")
        for line, section, key in gateway_keys(text)
        for name in (section, key)
        if name and f'"{name}"' not in parser
    ]


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app("postgresql://127.0.0.1:1/unused")  # not started: no database


def test_every_aquami_command_line_names_commands_and_options_that_exist(text: str, root: TyperGroup) -> None:
    wrong = command_problems(text, root)
    assert not wrong, "\n".join(wrong)


def test_every_option_readme_names_is_an_option_of_some_command(text: str, root: TyperGroup) -> None:
    wrong = unknown_option_problems(text, root)
    assert not wrong, "\n".join(wrong)


def test_every_option_in_a_commands_row_is_that_commands(text: str, root: TyperGroup) -> None:
    wrong = row_option_problems(text, root)
    assert not wrong, "\n".join(wrong)


def test_every_endpoint_readme_names_is_a_route(text: str, app: Any) -> None:
    wrong = endpoint_problems(text, app)
    assert not wrong, "\n".join(wrong)


def test_every_path_readme_names_alone_is_a_route(text: str, app: Any) -> None:
    wrong = bare_path_problems(text, app)
    assert not wrong, "\n".join(wrong)


def test_every_aquami_variable_readme_names_is_read_by_the_code(text: str) -> None:
    wrong = envvar_problems(text, _code_text())
    assert not wrong, "\n".join(wrong)


def test_every_gateway_key_readme_names_is_read_by_the_parser(text: str) -> None:
    wrong = gateway_key_problems(text, (ROOT / "gateway" / "config.py").read_text(encoding="utf-8"))
    assert not wrong, "\n".join(wrong)


DRIFTED = """\
Line one.
Run `aquami collector run --detect-evry 60` or `aquami colector run` or `aquami server runn`, and
`aquami decode mbus|wbus HEX`; then `GET /meter/{id}`, `POST /alerts/{id}/dismis`,
`AQUAMI_DATABSE_URL` and the gateway's `[mqtt] uri`, `--vee-evry`, `/helth`, `/logout`, `/var/x`.
```
aquami bill determinants --cvs      the month
```
| collector | `aquami collector run` | `--vee-every`, `--period` |
"""


def test_the_checks_name_the_line_and_the_name_of_each_drift(root: TyperGroup, app: Any) -> None:
    """The checks above pass on README today: here each finds what a rename would leave behind."""
    assert command_problems(DRIFTED, root) == [
        "README.md:2: `aquami collector run` has no option --detect-evry",
        "README.md:2: `aquami colector run`: no sub-command `colector` under `aquami`",
        "README.md:2: `aquami server runn`: no sub-command `runn` under `aquami server`",
        "README.md:3: `aquami decode mbus|wbus HEX`: no sub-command ['wbus'] under `aquami decode`",
        "README.md:6: `aquami bill determinants` has no option --cvs",
    ]
    assert row_option_problems(DRIFTED, root) == ["README.md:8: `aquami collector run` has no option --period"]
    assert unknown_option_problems(DRIFTED, root) == [
        "README.md:2: no aquami command has --detect-evry",
        "README.md:4: no aquami command has --vee-evry",
        "README.md:6: no aquami command has --cvs",
    ]
    assert endpoint_problems(DRIFTED, app) == [
        "README.md:3: no route GET /meter/{id}",
        "README.md:3: no route POST /alerts/{id}/dismis",
    ]
    assert bare_path_problems(DRIFTED, app) == ["README.md:4: no route for /helth"]
    assert envvar_problems(DRIFTED, _code_text()) == ["README.md:4: nothing reads AQUAMI_DATABSE_URL"]
    parser = (ROOT / "gateway" / "config.py").read_text(encoding="utf-8")
    assert gateway_key_problems(DRIFTED, parser) == ["README.md:4: gateway/config.py reads no 'uri' ([mqtt] uri)"]


def test_every_command_is_named_in_readme(text: str, root: TyperGroup) -> None:
    named: set[tuple[str, ...]] = set()
    for line in command_lines(text):
        reached, _ = _resolve(root, leading_words(line.words))
        for path, _command in reached:
            named.update(path[:end] for end in range(1, len(path) + 1))
    unnamed = [" ".join(path) for path, _ in _walk(root) if path not in named]
    assert not unnamed, f"README.md names no `aquami {unnamed}` in a code span or block"


def test_every_option_is_named_in_readme(text: str, root: TyperGroup) -> None:
    """A flag pair (``--crcs/--no-crcs``) is named by either of its names."""
    mentioned = {option for _line, option, _text in all_options(text)}
    unnamed = [
        f"aquami {' '.join(path)} {' / '.join(names)}"
        for path, command in _walk(root)
        for names in _option_names(command)
        if not mentioned.intersection(names) and not UNNAMED_OPTIONS.keys() & set(names)
    ]
    assert not unnamed, "README.md never names:\n" + "\n".join(unnamed)


def _routed(app: Any, method: str, path: str, partly: bool = False) -> bool:
    """Whether the app's router has a route for ``method path`` (``partly``: for any method),
    ``{param}`` standing for "1" (a value an ``int`` parameter takes too): the router's own
    matching, path parameters, mounts (``/static/``) and all."""
    scope = {"type": "http", "method": method, "path": re.sub(r"\{[^}]*\}", "1", path), "root_path": ""}
    wanted = {Match.FULL, Match.PARTIAL} if partly else {Match.FULL}
    return any(route.matches(scope)[0] in wanted for route in app.router.routes)


def _code_text() -> str:
    """Every source file and script (the tests' too: tests/services.py reads AQUAMI_TEST_DATABASE_URL)."""
    files = [path for top in SOURCES for path in (ROOT / top).rglob("*") if path.suffix in {".py", ""}]
    return "\n".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in files
        if path.is_file() and path.name != Path(__file__).name
    ) + (ROOT / "Makefile").read_text(encoding="utf-8")


def test_every_variable_an_option_reads_is_named_in_readme(text: str, root: TyperGroup) -> None:
    unnamed = [
        f"aquami {' '.join(path)} {parameter.name}: {parameter.envvar}"
        for path, command in _walk(root)
        for parameter in command.params
        if isinstance(parameter.envvar, str) and parameter.envvar not in text
    ]
    assert not unnamed, "README.md never names:\n" + "\n".join(unnamed)
