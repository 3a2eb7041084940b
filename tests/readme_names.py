"""What README.md names: ``aquami …`` command lines, HTTP endpoints, ``AQUAMI_*`` variables.

Each name comes with the README line it starts on, so a test failing on it can say where to look.
The extraction is deliberately plain (regular expressions over the Markdown): README's own style,
commands in code spans and code blocks and endpoints as ``METHOD /path``, is what it relies on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")  # a code span may wrap onto the next line
# ``aquami`` as a command: at the start, after a blank, a bracket, a quote or ``bin/`` (not ``/mnt/sd/aquami``)
_COMMAND = re.compile(r"(?:^|(?<=[\s(\"'=])|(?<=bin/))aquami[ \t\n]+(.*)", re.S)
_OPTION = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")
_WORD = re.compile(r"[a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*")
_ENDPOINT = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)\s+(/[^\s`,;)|]*)")
_MORE_PATHS = re.compile(r"`…(/[^\s`]*)`")  # an API table's ``…/services/{code}.json`` after a full path
_DEMO_URL = re.compile(r"http://127\.0\.0\.1:8000(/[^\s`'\")]*)")
_ENVVAR = re.compile(r"\bAQUAMI_[A-Z0-9_]*[A-Z0-9]\b")


@dataclass(frozen=True)
class CommandLine:
    """``aquami`` then the words after it, up to the end of its span (or of a code block's line)."""

    line: int
    words: tuple[str, ...]


@dataclass(frozen=True)
class Endpoint:
    line: int
    method: str
    path: str  # without its query string


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _code_block_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    for block in _FENCE.finditer(text):
        first = _line_of(text, block.start(1))
        lines.extend((first + n, line) for n, line in enumerate(block.group(1).splitlines()))
    return lines


def _prose(text: str) -> str:
    """``text`` with its code blocks blanked out, line count kept."""
    return _FENCE.sub(lambda block: "\n" * block.group(0).count("\n"), text)


def command_lines(text: str) -> list[CommandLine]:
    """Every ``aquami …`` in a code span or a code block line.

    A code block line describes its command after a gap of two or more blanks (``aquami demo   the
    whole path, live``): only what comes before the gap is the command line.
    """
    found: list[tuple[int, str]] = []
    prose = _prose(text)
    for span in _SPAN.finditer(prose):
        found.append((_line_of(prose, span.start(1)), span.group(1)))
    for number, line in _code_block_lines(text):
        found.append((number, re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]))
    lines = []
    for number, snippet in found:
        for command in _COMMAND.finditer(snippet):
            words = tuple(command.group(1).split())
            lines.append(CommandLine(number + snippet.count("\n", 0, command.start()), words))
    return lines


def options_in(words: tuple[str, ...]) -> list[str]:
    return [option for word in words for option in _OPTION.findall(word)]


def leading_words(words: tuple[str, ...]) -> list[str]:
    """The words that may name sub-commands: the command words before the first option or argument
    (``run|check|scan`` is one word naming three)."""
    leading = []
    for word in words:
        bare = word.strip("[](),:;.")
        if not _WORD.fullmatch(bare):
            break
        leading.append(bare)
    return leading


def endpoints(text: str) -> list[Endpoint]:
    """``GET /path`` anywhere, an API table's ``…/more`` beside its full path, and the demo's
    ``http://127.0.0.1:8000/…`` addresses (pages and API answers fetched with GET)."""
    found = []
    for match in _ENDPOINT.finditer(text):
        line = _line_of(text, match.start())
        path = match.group(2).split("?")[0].rstrip(".:`")
        found.append(Endpoint(line, match.group(1), path))
        line_text = text.splitlines()[line - 1]
        if line_text.startswith("|"):  # the same cell's "`…/requests/{id}.json`"
            base = path.rsplit("/", 1)[0]
            for more in _MORE_PATHS.finditer(line_text):
                found.append(Endpoint(line, match.group(1), base + more.group(1).split("?")[0]))
    for match in _DEMO_URL.finditer(text):
        found.append(Endpoint(_line_of(text, match.start()), "GET", match.group(1).split("?")[0].rstrip(".")))
    return found


def all_options(text: str) -> list[tuple[int, str, str]]:
    """Every ``--option`` anywhere, with its line number and the line."""
    lines = text.splitlines()
    return [
        (_line_of(text, match.start()), match.group(1), lines[_line_of(text, match.start()) - 1])
        for match in _OPTION.finditer(text)
    ]


_GATEWAY_KEY = re.compile(r"`\[([a-z_]+)\](?: ([a-z_]+))?`")


def gateway_keys(text: str) -> list[tuple[int, str, str]]:
    """The gateway TOML's ``[section] key`` (or ``[section]``) README names in a code span; README has
    no table of them (gateway/examples/gateway.toml is the annotated reference)."""
    return [
        (_line_of(text, match.start()), match.group(1), match.group(2) or "") for match in _GATEWAY_KEY.finditer(text)
    ]


_BARE_PATH = re.compile(r"`(/[^`\s]*)`")
FILE_SYSTEM = ("/var/", "/mnt/", "/etc/", "/dev/", "/tmp/", "/usr/", "/opt/", "/home/", "/srv/")


def bare_paths(text: str) -> list[tuple[int, str]]:
    """A code span that is a path alone (``/health``, ``/docs``, ``/care/enquiries/{id}``), no method
    said, its query string dropped; a file system's (``/var/lib/aquami/spool``) left out."""
    return [
        (_line_of(text, match.start()), match.group(1).split("?")[0])
        for match in _BARE_PATH.finditer(text)
        if not match.group(1).startswith(FILE_SYSTEM)
    ]


def envvars(text: str) -> list[tuple[int, str]]:
    return [(_line_of(text, match.start()), match.group(0)) for match in _ENVVAR.finditer(text)]
