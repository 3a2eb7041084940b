"""The contracts' patterns are ECMA-262 regular expressions (JSON Schema 2020-12 §6.4); the product's
validators read them so. Before, they searched them with Python's ``re``, whose ``$`` also matches
before a final line break: the gateway took ``"meter_id": "WM-1\\n"`` for a meter id (and answered
"no meter 'WM-1\\n'", where the contract refuses the request), and the schema passed events and
status messages with such ids and times, which the contract, and other validators, refuse.

The ECMA-faithful reading here is ``jsonschema_rs`` (Rust; its patterns are translated to ECMA-262's
meaning: ``$`` the end, ``\\d`` ASCII digits), apart from the code under test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonschema.protocols import Validator

from aquami.contracts import commands, events, reads, status
from aquami.contracts.ecma_regex import UnsupportedPattern, python_pattern
from aquami.contracts.schema_files import ContractValidator, breaches

SCHEMAS = {
    "reads": (reads.reads_schema(), reads.reads_validator()),
    "events": (events.events_schema(), events.events_validator()),
    "status": (status.status_schema(), status.status_validator()),
    "commands": (commands.commands_schema(), commands._validator("error_reply")),
}


def patterns_in(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                if key == "patternProperties" and isinstance(value, dict):
                    yield from value  # its keys are patterns too
                yield from patterns_in(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from patterns_in(item)


PATTERNS = sorted({(name, p) for name, (schema, _) in SCHEMAS.items() for p in patterns_in(schema)})
#: Endings and characters on which Python's ``re`` and ECMA-262 part: line breaks, other scripts' digits.
ODD = ["\n", "\r", "\r\n", "\u2028", "\u0085", " ", "\u0662", "\uff10", "\u0967", "é", "_"]


def product_takes(name: str, pattern: str, text: str) -> bool:
    validator: Validator = SCHEMAS[name][1]
    return validator.evolve(schema={"type": "string", "pattern": pattern}).is_valid(text)


#: jsonschema_rs's default engine (fancy-regex) takes "a" for ``a+a*a+`` and ``a+b*a+``, and "b" for
#: ``(?:a|b+a*b+)``: hypothesis met such a pattern now and then, and the property failed by chance.
#: The ``regex`` crate's engine answers them right; the patterns here need no look-around it lacks.
_ECMA_ENGINE = jsonschema_rs.RegexOptions()


def ecma_takes(pattern: str, text: str) -> bool:
    schema = {"type": "string", "pattern": pattern}
    return jsonschema_rs.validator_for(schema, pattern_options=_ECMA_ENGINE).is_valid(text)


@st.composite
def texts_near(draw: st.DrawFn, pattern: str) -> str:
    """A string the pattern nearly takes: one it takes, with an odd character put before, after or
    in place of one of its own (or any text of those characters and digits)."""
    taken = draw(st.from_regex(python_pattern(pattern), fullmatch=True))
    odd = draw(st.sampled_from(ODD))
    where = draw(st.integers(0, len(taken)))
    how = draw(st.sampled_from(["append", "prepend", "insert", "replace", "any"]))
    if how == "append":
        return taken + odd
    if how == "prepend":
        return odd + taken
    if how == "insert":
        return taken[:where] + odd + taken[where:]
    if how == "replace":
        return taken[:where] + odd + taken[where + 1 :]
    return "".join(draw(st.lists(st.sampled_from([*ODD, *"0123456789AZaz-.:T+"]), max_size=30)))


@pytest.mark.parametrize(("name", "pattern"), PATTERNS)
@given(data=st.data())
def test_the_products_validators_read_each_contract_pattern_as_ecma_262_does(
    name: str, pattern: str, data: st.DataObject
) -> None:
    text = data.draw(st.one_of(st.from_regex(python_pattern(pattern), fullmatch=True), texts_near(pattern)))
    assert product_takes(name, pattern, text) == ecma_takes(pattern, text), repr(text)


@pytest.mark.parametrize(
    "text",
    ["WM-1\n", "WM-1\r", "WM-1\u2028", "\nWM-1", "WM-1\n\n"],
)
def test_an_identifier_with_a_line_break_is_refused_by_every_contract(text: str) -> None:
    assert request_problem_of({"meter_id": text}).startswith("meter_id must be a meter id")
    batch = {"gateway_id": "GW-1", "batch_seq": 1, "sent_at": "2026-12-06T10:00:00Z", "readings": []}
    batch["readings"] = [{"meter_id": text, "ts": "2026-12-06T10:00:00Z", "volume_m3": 1.0}]
    assert [e.split(":")[0] for e in reads.schema_errors(batch)] == ["readings/0/meter_id"]
    event: dict[str, Any] = {"gateway_id": text, "event": "spool_full", "ts": "2026-12-06T10:00:00Z"}
    event |= {"spool_depth": 3, "policy": "stop_polling"}
    assert [e.split(":")[0] for e in events.schema_errors(event)] == ["gateway_id"]
    reading = {"meter_id": "WM-1", "ts": "2026-12-06T10:00:00Z", "volume_m3": 1.0}
    reply = {"request_id": None, "ok": True, "meter_id": "WM-1", "reading": reading}
    assert commands.reply_errors("read-now", reply) == []
    assert commands.reply_errors("read-now", {**reply, "meter_id": text})


def request_problem_of(request: dict[str, Any]) -> str:
    said = commands.request_problem("read-now", request)
    assert said is not None
    return said


@pytest.mark.parametrize(
    "ts",
    [
        "2026-12-06T10:00:00Z\n",
        "2026-12-06T10:00:00+00:00\n",
        "2026-12-06T10:00:00.5Z\r",
        "\u0662\u0660\u0662\u0666-12-06T10:00:00Z",  # Arabic-Indic digits: Python's \d takes them
        "\uff12\uff10\uff12\uff16-12-06T10:00:00Z",  # fullwidth
    ],
)
def test_a_time_with_a_line_break_or_other_digits_is_refused_by_every_contract(ts: str) -> None:
    good: dict[str, Any] = {"gateway_id": "GW-1", "event": "spool_full", "ts": "2026-12-06T10:00:00Z"}
    good |= {"spool_depth": 3, "policy": "stop_polling"}
    assert events.schema_errors(good) == []
    assert [e.split(":")[0] for e in events.schema_errors({**good, "ts": ts})] == ["ts"]
    batch = {"gateway_id": "GW-1", "batch_seq": 1, "sent_at": ts}
    batch["readings"] = [{"meter_id": "WM-1", "ts": ts, "volume_m3": 1.0}]
    assert [e.split(":")[0] for e in reads.schema_errors(batch)] == ["readings/0/ts", "sent_at"]


def test_a_reply_error_ending_in_a_line_break_is_not_one_line() -> None:
    assert commands.reply_errors(None, {"ok": False, "error": "bad payload"}) == []
    assert commands.reply_errors(None, {"ok": False, "error": "bad payload\n"})


def test_the_contracts_use_no_pattern_the_translation_refuses() -> None:
    assert PATTERNS
    for _, pattern in PATTERNS:
        python_pattern(pattern)


#: Pattern pieces for the translation's property. Not "\\b", "\\B" nor ".": jsonschema_rs reads the
#: first two by Unicode's word characters and lets "." take "\\r" (ECMA-262 does neither); the facts
#: below hold the translation to ECMA-262 there.
ATOMS = [
    "a",
    "b",
    "0",
    "\\d",
    "\\D",
    "\\w",
    "\\W",
    "\\s",
    "\\S",
    "\\n",
    "\\.",
    "[a-c0-9]",
    "[^\\n]",
    "[^a\\d]",
    "[\\w-]",
]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,3}", "*?"]
SEEN = [
    "a",
    "b",
    "0",
    "7",
    "_",
    "-",
    " ",
    ".",
    "\n",
    "\r",
    "\t",
    "\u2028",
    "\u0085",
    "\u00a0",
    "\u0662",
    "é",
    "\U0001f600",
]


def _sequence(pieces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(pieces, min_size=1, max_size=4).map("".join)


pieces = st.recursive(
    st.tuples(st.sampled_from(ATOMS), st.sampled_from(QUANTIFIERS)).map("".join),
    lambda inner: st.tuples(_sequence(inner), _sequence(inner), st.sampled_from(QUANTIFIERS)).map(
        lambda t: f"(?:{t[0]}|{t[1]}){t[2]}"
    ),
    max_leaves=6,
)
patterns = st.tuples(st.sampled_from(["", "^"]), _sequence(pieces), st.sampled_from(["", "$"])).map("".join)


@settings(max_examples=300)
@given(pattern=patterns, text=st.lists(st.sampled_from(SEEN), max_size=8).map("".join))
@example(pattern="a+a*a+", text="a")  # what fancy-regex, jsonschema_rs's default engine, took
@example(pattern="a+b*a+", text="a")
@example(pattern="(?:a|b+a*b+)", text="b")
def test_the_translation_matches_what_ecma_262_matches(pattern: str, text: str) -> None:
    assert (re.search(python_pattern(pattern), text) is not None) == ecma_takes(pattern, text)


@pytest.mark.parametrize(
    ("pattern", "text", "taken"),
    [  # ECMA-262 (Unicode mode), as the JSON-Schema-Test-Suite's optional ecmascript-regex cases
        ("^abc$", "abc\n", False),
        ("^abc$", "abc", True),
        ("^\\d$", "\u07c0", False),  # NKO digit zero
        ("^\\d$", "7", True),
        ("^\\w$", "é", False),
        ("^\\W$", "é", True),
        ("^\\s$", "\u00a0", True),
        ("^\\s$", "\ufeff", True),
        ("^\\s$", "\u0085", False),  # Python's \s takes NEL; ECMA-262's does not
        ("^.$", "\r", False),
        ("^.$", "\u2028", False),
        ("^.$", "\U0001f600", True),
        ("^\\t$", "\t", True),
        ("^\\cJ$", "\n", True),
        ("^\\u{1F600}$", "\U0001f600", True),
        ("^[\\d-]+$", "1-2", True),
        ("^[^\\d]$", "\u0662", True),
        ("\\bé", "aé", True),  # é is no word character: a boundary after a
        ("^[]$", "", False),
        ("^[^]$", "\n", True),
        ("^a[&&]b$", "a&b", True),  # re would read "&&" as a set operation in a future Python
    ],
)
def test_the_translation_reads_ecma_262s_meanings(pattern: str, text: str, taken: bool) -> None:
    assert (re.search(python_pattern(pattern), text) is not None) is taken


@pytest.mark.parametrize(
    "pattern", ["a*+", "(?P<x>a)", "\\Z", "\\A", "\\1", "(?i)a", "\\p{L}", "a{", "]", "[\\D]", "\\"]
)
def test_what_the_translation_does_not_read_as_ecma_262_is_refused(pattern: str) -> None:
    with pytest.raises(UnsupportedPattern):
        python_pattern(pattern)


#: Schemas that read a pattern ``P`` as a property's name: as a ``patternProperties`` key (alone, and
#: as ``additionalProperties`` and ``unevaluatedProperties``, through an applicator, read it), and in
#: ``propertyNames``; with whether a message is valid when all its names match ``P`` (True) or none.
NAME_SCHEMAS = [
    ({"type": "object", "patternProperties": {"P": False}}, False),
    ({"type": "object", "patternProperties": {"P": {"type": "integer"}}, "additionalProperties": False}, True),
    ({"type": "object", "allOf": [{"patternProperties": {"P": True}}], "unevaluatedProperties": False}, True),
    (
        {
            "$defs": {"named": {"patternProperties": {"P": True}}},
            "$ref": "#/$defs/named",
            "unevaluatedProperties": False,
        },
        True,
    ),
    ({"type": "object", "propertyNames": {"pattern": "P"}}, True),
]


@settings(max_examples=300)
@given(
    pattern=patterns,
    names=st.lists(st.lists(st.sampled_from(SEEN), max_size=6).map("".join), min_size=1, max_size=3),
    shape=st.sampled_from(NAME_SCHEMAS),
)
@example(pattern="\\d", names=["\u0662"], shape=NAME_SCHEMAS[0])  # a digit to Python's re
@example(pattern="^a$", names=["a\n"], shape=NAME_SCHEMAS[1])  # Python's $ takes a last line break
@example(pattern="^\\w$", names=["\u00e9"], shape=NAME_SCHEMAS[3])  # a word character to Python's re
def test_the_contract_validator_reads_property_name_patterns_as_ecma_262_does(
    pattern: str, names: list[str], shape: tuple[dict[str, Any], bool]
) -> None:
    """A ``patternProperties`` key is an ECMA-262 regular expression, as ``pattern`` is. Before, the
    contracts' validator read only ``pattern`` as ECMA-262, and the library searched these keys with
    Python's ``re``: ``{"patternProperties": {"^a$": false}}`` refused ``{"a\\n": 1}``, which ECMA-262
    takes, and ``additionalProperties: false`` beside ``^\\d$`` took ``{"\u0662": 1}``. Each name is
    read by the translation, which the tests above hold to ECMA-262 (jsonschema_rs 0.60, asked
    here, would take "a" for ``a+a*a+``)."""
    template, when_all_match = shape
    schema = json.loads(json.dumps(template).replace('"P"', json.dumps(pattern)))
    taken = [re.search(python_pattern(pattern), name) is not None for name in names]
    expected = all(taken) if when_all_match else not any(taken)
    assert ContractValidator(schema).is_valid({name: 1 for name in names}) == expected, (names, taken)


@pytest.mark.parametrize(
    ("schema", "message", "errors"),
    [
        ({"patternProperties": {"^a$": {"type": "string"}}}, {"a\n": 1}, []),
        ({"patternProperties": {"^a$": {"type": "string"}}}, {"a": 1}, ["a: 1 is not of type 'string'"]),
        (
            {"patternProperties": {"^\\d$": True}, "additionalProperties": False},
            {"\u0662": 1, "7": 1},
            ["(root): '\u0662' does not match any of the regexes: '^\\\\d$'"],
        ),
        (
            {"allOf": [{"patternProperties": {"^a$": True}}], "unevaluatedProperties": False},
            {"a\n": 1, "a": 1},
            ["(root): Unevaluated properties are not allowed ('a\\n' was unexpected)"],
        ),
    ],
)
def test_a_pattern_property_s_breach_is_said_as_the_library_says_it(
    schema: dict[str, Any], message: dict[str, Any], errors: list[str]
) -> None:
    assert breaches(ContractValidator(schema), message) == errors
