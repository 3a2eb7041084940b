"""Where each key of a TOML file is, by line, so configuration errors can say "line 12".

``tomllib`` gives values but no positions. This scanner reads the same text line by line and records
the line of every table header and every ``key =``, under the same path the parsed document uses
(array-of-tables elements by index: ``("meters", 3, "unit_id")``). It understands what gateway
configurations use (tables, arrays of tables, dotted and quoted keys, multi-line arrays and strings);
a key it cannot place falls back to its nearest enclosing table, which is still the right place to look.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_KEY_PART = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_KEY})\s*\]\]")
_TABLE = re.compile(rf"^\s*\[\s*({_KEY})\s*\]")
_ASSIGN = re.compile(rf"^\s*({_KEY})\s*=(.*)$")


def _split_key(key: str) -> list[str]:
    parts = re.findall(_KEY_PART, key)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _open_brackets(value: str) -> int:
    """Net ``[``/``{`` minus ``]``/``}`` in ``value``, outside strings and comments."""
    depth = 0
    quote = ""
    i = 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


class LineIndex:
    """Line numbers (1-based) of the keys and tables of one TOML text."""

    def __init__(self, text: str):
        self._lines: dict[Path, int] = {}
        self._array_counts: dict[Path, int] = {}
        self._scan(text)

    def _resolve(self, keys: list[str]) -> Path:
        """A header's dotted key, with the current index after each array of tables it passes."""
        path: list[str | int] = []
        for key in keys:
            path.append(key)
            count = self._array_counts.get(tuple(path))
            if count is not None:
                path.append(count - 1)
        return tuple(path)

    def _scan(self, text: str) -> None:
        table: Path = ()
        depth = 0  # open brackets of a multi-line value
        in_string = ""  # a multi-line string's delimiter while inside one
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string:
                if line.count(in_string) % 2 == 1:
                    in_string = ""
                continue
            if depth > 0:
                depth += _open_brackets(line)
                continue
            if match := _ARRAY_TABLE.match(line):
                keys = _split_key(match.group(1))
                parent = self._resolve(keys[:-1])
                array_path = (*parent, keys[-1])
                index = self._array_counts.get(array_path, 0)
                self._array_counts[array_path] = index + 1
                table = (*array_path, index)
                self._lines.setdefault(array_path, number)
                self._lines[table] = number
            elif match := _TABLE.match(line):
                table = self._resolve(_split_key(match.group(1)))
                self._lines.setdefault(table, number)
            elif match := _ASSIGN.match(line):
                self._lines.setdefault((*table, *_split_key(match.group(1))), number)
                value = match.group(2)
                for delimiter in ('"""', "'''"):
                    if value.count(delimiter) % 2 == 1:
                        in_string = delimiter
                        break
                else:
                    depth = max(_open_brackets(value), 0)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest enclosing key or table that has one."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None
