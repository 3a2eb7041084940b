"""Typed access to one table of a parsed TOML file, with errors that name the file, line and field.

Every read goes through :class:`Table`, so every error reads the same way::

    gateway.toml:14: meters[2].unit_id: expected integer, got string '7'

and every table refuses keys it does not know (a misspelt ``pol_interval_s`` is an error, not a
silently ignored default).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from aquami.config.toml_lines import LineIndex, Path

_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "table", list: "array"}


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the file, the line and the field."""


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


class Document:
    """A parsed file and where its keys are."""

    def __init__(self, source: str, lines: LineIndex | None):
        self.source = source
        self.lines = lines

    def error(self, path: Path, message: str) -> ConfigError:
        line = self.lines.line(path) if self.lines is not None else None
        at = f"{self.source}:{line}" if line is not None else self.source
        return ConfigError(f"{at}: {_dotted(path)}: {message}")


class Table:
    def __init__(self, document: Document, path: Path, values: Any):
        self.document = document
        self.path = path
        if not isinstance(values, dict):
            raise document.error(path, f"expected a table, got {_describe(values)}")
        self.values: dict[str, Any] = values
        self._read: set[str] = set()

    def error(self, key: str | None, message: str) -> ConfigError:
        return self.document.error(self.path if key is None else (*self.path, key), message)

    def _typed(self, key: str, kind: type, default: Any) -> Any:
        self._read.add(key)
        if key not in self.values:
            if default is ...:
                raise self.error(None, f"missing field {key!r}")
            return default
        value = self.values[key]
        accepted = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, accepted = float(value), True
        if not accepted:
            raise self.error(key, f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}")
        return value

    def text(self, key: str, default: Any = ...) -> Any:
        return self._typed(key, str, default)

    def integer(self, key: str, default: Any = ..., *, low: int | None = None, high: int | None = None) -> Any:
        value = self._typed(key, int, default)
        if key in self.values:
            self._bounded(key, value, low, high)
        return value

    def number(self, key: str, default: Any = ..., *, low: float | None = None, high: float | None = None) -> Any:
        value = self._typed(key, float, default)
        if key in self.values:
            if not math.isfinite(value):  # TOML's nan and inf: no bound would catch nan
                raise self.error(key, f"{value!r} is not a finite number")
            self._bounded(key, value, low, high)
        return value

    def array(self, key: str, default: Any = ...) -> Any:
        return self._typed(key, list, default)

    def flag(self, key: str, default: Any = ...) -> Any:
        return self._typed(key, bool, default)

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> Any:
        value = self._typed(key, str, default)
        if key in self.values and value not in options:
            raise self.error(key, f"{value!r} is not one of {', '.join(repr(o) for o in options)}")
        return value

    def _bounded(self, key: str, value: float, low: float | None, high: float | None) -> None:
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                raise self.error(key, f"{value!r} must be at least {low}")
            if low is None:
                raise self.error(key, f"{value!r} must be at most {high}")
            raise self.error(key, f"{value!r} is outside {low}..{high}")

    def table(self, key: str, *, required: bool = False) -> Table:
        self._read.add(key)
        if key not in self.values:
            if required:
                raise self.error(None, f"missing table [{_dotted((*self.path, key))}]")
            return Table(self.document, (*self.path, key), {})
        return Table(self.document, (*self.path, key), self.values[key])

    def raw_table(self, key: str) -> dict[str, Any]:
        """A free-form table (a profile's parameters), only checked to be a table."""
        return dict(self.table(key).values)

    def tables(self, key: str) -> Iterator[Table]:
        """The tables of an array of tables (``[[key]]``), each knowing its index."""
        self._read.add(key)
        items = self.values.get(key, [])
        if not isinstance(items, list):
            raise self.error(key, f"expected an array of tables ([[{key}]]), got {_describe(items)}")
        for index, item in enumerate(items):
            yield Table(self.document, (*self.path, key, index), item)

    def has(self, key: str) -> bool:
        return key in self.values

    def no_unknown_keys(self) -> None:
        for key in self.values:
            if key not in self._read:
                known = ", ".join(sorted(self._read))
                raise self.error(key, f"unknown field {key!r} (known here: {known})")


def _describe(value: Any) -> str:
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} {value!r}"
