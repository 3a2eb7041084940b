"""Hypothesis strategies that damage a good input, for fuzzing the parsers of what people write.

A file a person writes (a gateway configuration, a rig file, a meter profile) is damaged as people
damage it: a few characters inserted, changed or deleted (:func:`damaged_texts`), or, once parsed as
TOML, a few values given another type or left out (:func:`damaged_documents`). The parser must answer
with a result or its own error naming the mistake, never another exception (a traceback where a line
and a field were due).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC
from typing import Any, TypeVar

from hypothesis import strategies as st

Key = str | int
Parsed = TypeVar("Parsed")

#: Pieces of TOML (and of the mistakes made in it) to put into a file's text.
TOML_PIECES = [*"[]{}=\".,-_0129aZ#\n '\\", "inf", "nan", "true", "1e999", "0x", "\x00", "${"]

#: Any value a TOML file can hold, put where the file wants another.
toml_values = st.one_of(
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.dates(),
    st.times(),
    st.lists(st.integers() | st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([0, -1, "", 10**30, float("nan")]),
)

_LEFT_OUT = object()


def key_paths(node: Any, prefix: tuple[Key, ...] = ()) -> Iterator[tuple[Key, ...]]:
    """Every key path of a parsed TOML document: its tables and arrays, and each value in them."""
    items: Any = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from key_paths(value, (*prefix, key))


def _at(document: dict[str, Any], path: tuple[Key, ...]) -> Any:
    node: Any = document
    for key in path:
        node = node[key]
    return node


def _damage(document: dict[str, Any], edits: Sequence[tuple[tuple[Key, ...], Any]]) -> dict[str, Any]:
    damaged = copy.deepcopy(document)
    for path, value in edits:
        node: Any = damaged
        try:
            for key in path[:-1]:
                node = node[key]
            if value is _LEFT_OUT:
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):  # an earlier edit took this path away
            continue
    return damaged


def damaged_documents(document: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``document`` with one to three of its values replaced by other TOML values or left out; half
    the edits fall on a table or an array (a number where a list of tables was due, say)."""
    paths = list(key_paths(document))
    containers = [path for path in paths if isinstance(_at(document, path), dict | list)]
    edit = st.tuples(st.sampled_from(containers) | st.sampled_from(paths), toml_values | st.just(_LEFT_OUT))
    return st.lists(edit, min_size=1, max_size=3).map(lambda edits: _damage(document, edits))


def damaged_texts(text: str, pieces: Sequence[str] = TOML_PIECES, max_edits: int = 6) -> st.SearchStrategy[str]:
    """``text`` with one to ``max_edits`` characters inserted, replaced or deleted (a piece for a character)."""

    def damage(edits: list[tuple[int, int, str]]) -> str:
        chars = list(text)
        for at, how, piece in edits:
            at = min(at, len(chars))
            if how == 0:
                chars.insert(at, piece)
            elif at < len(chars):
                chars[at : at + 1] = [piece] if how == 1 else []
        return "".join(chars)

    edit = st.tuples(st.integers(0, len(text)), st.integers(0, 2), st.sampled_from(list(pieces)))
    return st.lists(edit, min_size=1, max_size=max_edits).map(damage)


def parsed_or_refused(parse: Callable[[], Parsed], refusal: type[Exception], source: str) -> Parsed | None:
    """What ``parse`` gives, or None where it refused the input with ``refusal`` naming ``source``
    (the file, so the person knows where to look); any other exception fails the test."""
    try:
        return parse()
    except refusal as error:
        assert str(error).startswith(source), error
        return None
