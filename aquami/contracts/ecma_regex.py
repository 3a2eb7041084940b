"""JSON Schema's regular expressions (ECMA-262) as Python ``re`` patterns that match the same strings.

A schema's ``pattern`` is an ECMA-262 regular expression (JSON Schema 2020-12 §6.4), and the
``jsonschema`` library searches it with Python's ``re``, which reads some of it otherwise: ``$``
also matches before a final line break ("WM-1\\n" was an identifier), ``\\d`` and ``\\w`` take any
script's digits and letters ("٢٠٢٦-…" was a time), ``.`` takes a carriage return. :func:`python_pattern`
writes a pattern so ``re`` reads it as ECMA-262 does (in its Unicode mode, code point by code point);
a construct it does not know is refused (:class:`UnsupportedPattern`) rather than read another way.
"""

from __future__ import annotations

import re

__all__ = ["UnsupportedPattern", "compile_pattern", "python_pattern"]

#: ECMA-262's WhiteSpace and LineTerminator: what ``\s`` is (a class's contents, for ``re``).
_SPACE = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_DIGIT = "0-9"
_WORD = "A-Za-z0-9_"
#: What ``.`` does not match: ECMA-262's line terminators.
_LINE_ENDS = "\\n\\r\\u2028\\u2029"
_CLASS_ESCAPES = {"d": f"[{_DIGIT}]", "D": f"[^{_DIGIT}]", "w": f"[{_WORD}]", "W": f"[^{_WORD}]"}
_CLASS_ESCAPES |= {"s": f"[{_SPACE}]", "S": f"[^{_SPACE}]"}
_WORD_EDGE = f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))"
_ASSERTIONS = {"b": _WORD_EDGE, "B": f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"}
_CONTROL = {"t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r"}
_SYNTAX = set("^$\\.*+?()[]{}|/")
#: How a non-capturing group or a look-around opens after its ``(``.
_GROUPS = ("?:", "?=", "?!", "?<=", "?<!")
_QUANTIFIER = re.compile(r"\{[0-9]+(,[0-9]*)?\}")
_HEX = re.compile(r"x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|u\{[0-9A-Fa-f]+\}")


class UnsupportedPattern(ValueError):
    """A pattern holding a construct read otherwise by ``re``, and not translated here."""


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` (ECMA-262) compiled for ``re.search`` to match what ECMA-262 matches."""
    return re.compile(python_pattern(pattern))


def python_pattern(pattern: str) -> str:
    """``pattern`` (ECMA-262, Unicode mode) written for Python's ``re``: ``$`` as ``\\Z``, ``\\d``
    ``\\w`` ``\\s`` ``\\b`` and ``.`` as ECMA-262's sets; UnsupportedPattern for what is not handled
    (backreferences, ``\\p{…}``, inline flags, Python's own syntax such as ``\\Z`` or ``(?P<…>)``)."""
    return _Translator(pattern).run()


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.at = 0
        self.out: list[str] = []
        self.quantifiable = False  # whether the last thing written may take a quantifier

    def refuse(self, what: str) -> UnsupportedPattern:
        return UnsupportedPattern(f"pattern {self.pattern!r}: {what} at {self.at} is not supported")

    def run(self) -> str:
        text = self.pattern
        while self.at < len(text):
            char = text[self.at]
            if char == "\\":
                self.escape()
                continue
            self.at += 1
            if char == "[":
                self.out.append(self.char_class())
                self.quantifiable = True
            elif char == "(":
                self.group()
            elif char == ")":
                self.out.append(")")
                self.quantifiable = True
            elif char in "*+?{":
                self.quantifier(char)
            elif char in "]}":
                raise self.refuse(f"a lone {char!r}")
            else:
                self.out.append({"^": "^", "$": "\\Z", "|": "|", ".": f"[^{_LINE_ENDS}]"}.get(char) or re.escape(char))
                self.quantifiable = char not in "^$|"
        return "".join(self.out)

    def quantifier(self, char: str) -> None:
        if not self.quantifiable:
            raise self.refuse(f"{char!r} with nothing to repeat")
        if char == "{":
            found = _QUANTIFIER.match(self.pattern, self.at - 1)
            if found is None:
                raise self.refuse("a '{' that is no quantifier")
            self.at = found.end()
            char = found.group()
        if self.pattern.startswith("?", self.at):  # lazy
            self.at += 1
            char += "?"
        self.out.append(char)
        self.quantifiable = False  # a quantifier after one (Python's possessive a*+) is ECMA's error

    def group(self) -> None:
        """A group's opening (its ``(`` read): capturing, or ``(?:`` and the look-arounds, which
        both read alike; a named group, or anything else after ``(?``, refused."""
        opening = next((o for o in _GROUPS if self.pattern.startswith(o, self.at)), None)
        if opening is None and not self.pattern.startswith("?", self.at):
            opening = ""  # a capturing group
        if opening is None:
            raise self.refuse("a '(?' group other than (?: (?= (?! (?<= (?<!")
        self.out.append("(" + opening)
        self.at += len(opening)
        self.quantifiable = False

    def escape(self) -> None:
        self.at += 1
        if self.at >= len(self.pattern):
            raise self.refuse("a trailing '\\'")
        char = self.pattern[self.at]
        self.quantifiable = True
        if char in _CLASS_ESCAPES:
            self.at += 1
            self.out.append(_CLASS_ESCAPES[char])
        elif char in _ASSERTIONS:
            self.at += 1
            self.out.append(_ASSERTIONS[char])
            self.quantifiable = False
        else:
            self.out.append(re.escape(self.literal_escape()))

    def literal_escape(self) -> str:
        """The character an escape such as ``\\n``, ``\\x41``, ``\\u{1F600}`` or ``\\.`` stands for
        (the ``\\`` read); a backreference, ``\\p{…}``, or a letter ECMA-262 gives no meaning refused."""
        text, char = self.pattern, self.pattern[self.at]
        if char in _CONTROL or char in _SYNTAX:
            self.at += 1
            return _CONTROL.get(char, char)
        if char == "0" and not text[self.at + 1 : self.at + 2].isdigit():
            self.at += 1
            return "\0"
        if char == "c" and text[self.at + 1 : self.at + 2].isascii() and text[self.at + 1 : self.at + 2].isalpha():
            self.at += 2
            return chr(ord(text[self.at - 1]) % 32)
        found = _HEX.match(text, self.at)
        if found is not None:
            self.at = found.end()
            digits = found.group()[1:].strip("{}")
            if int(digits, 16) > 0x10FFFF:
                raise self.refuse("a code point over U+10FFFF")
            return chr(int(digits, 16))
        raise self.refuse(f"the escape '\\{char}'")

    def char_class(self) -> str:
        """A ``[…]`` (its ``[`` read) as ``re`` reads the same set: each character written escaped
        (``re`` warns of, and will read, ``[[`` ``&&`` ``--`` ``||`` ``~~`` as set operations)."""
        text = self.pattern
        negated = text.startswith("^", self.at)
        self.at += negated
        items: list[str] = []
        while True:
            if self.at >= len(text):
                raise self.refuse("a '[' never closed")
            if text[self.at] == "]":
                self.at += 1
                break
            first = self.class_atom()
            if text.startswith("-", self.at) and not text.startswith("-]", self.at) and first[1] is not None:
                self.at += 1
                last = self.class_atom()
                if last[1] is None or ord(last[1]) < ord(first[1]):
                    raise self.refuse("a range out of order, or between sets")
                items.append(f"{re.escape(first[1])}-{re.escape(last[1])}")
            else:
                if text.startswith("-", self.at) and not text.startswith("-]", self.at):
                    raise self.refuse("a range from a set")
                items.append(first[0])
        if not items:  # [] matches nothing, [^] any character
            return "[^\\s\\S]" if not negated else "[\\s\\S]"
        return f"[{'^' if negated else ''}{''.join(items)}]"

    def class_atom(self) -> tuple[str, str | None]:
        """One member of a class: as written for ``re``, and the character it is (None for a set)."""
        text = self.pattern
        char = text[self.at]
        if char != "\\":
            self.at += 1
            return re.escape(char), char
        self.at += 1
        if self.at >= len(text):
            raise self.refuse("a trailing '\\'")
        escaped = text[self.at]
        if escaped in "dws":
            self.at += 1
            return _CLASS_ESCAPES[escaped][1:-1], None
        if escaped in "DWS":
            raise self.refuse(f"'\\{escaped}' inside a class")
        if escaped in "b-":
            self.at += 1
            literal = "\b" if escaped == "b" else "-"
            return re.escape(literal), literal
        literal = self.literal_escape()
        return re.escape(literal), literal
