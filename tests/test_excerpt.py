"""A value a person gave is quoted by an error whole when short, else by its start and its length
(aquami.excerpt): a 100,000-character frame or ``--from`` made a 100,000-character error line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from aquami.excerpt import HEAD, WHOLE_MAX, frame_excerpt, quoted

#: What an error line may take beside the value it quotes (the message's own words, the JSON keys).
WORDS = 300


@given(st.text())
def test_a_value_is_quoted_whole_when_short_else_by_its_start_and_length(text: str) -> None:
    said = quoted(text)
    if len(text) <= WHOLE_MAX:
        assert said == repr(text)
    else:
        assert said == f"{text[:HEAD]!r}… ({len(text)} characters)"
    assert len(said) <= len(repr(text[:WHOLE_MAX])) + len(f"… ({len(text)} characters)")


@given(st.binary(), st.booleans())
def test_a_frame_is_echoed_whole_when_short_else_by_its_first_hex_digits_and_size(frame: bytes, spaced: bool) -> None:
    text = frame.hex(" ") if spaced else frame.hex()
    said = frame_excerpt(f" {text}\n")
    if len(frame) * 2 <= WHOLE_MAX:
        assert said.replace(" ", "") == frame.hex()  # whole, as written when that is short
    else:
        assert said == f"{frame.hex()[:HEAD]}… ({len(frame)} bytes)"


@given(st.text(alphabet="0123456789abcdefxyz \t", min_size=WHOLE_MAX + 1))
def test_text_that_is_no_whole_number_of_bytes_is_measured_in_characters(text: str) -> None:
    digits = "".join(text.split())
    said = frame_excerpt(text)
    assert len(said) <= HEAD + len(f"… ({len(digits)} characters)") or len(digits) <= WHOLE_MAX
    if len(digits) > WHOLE_MAX:
        assert said.startswith(digits[:HEAD] + "… (")


@pytest.mark.parametrize(
    "command", [["decode", "mbus"], ["decode", "wmbus"], ["decode", "modbus", "--profile", "smart_water_meter"]]
)
@pytest.mark.parametrize("frame", ["68" * 50_000, "zz" * 50_000])
def test_a_long_bad_frame_is_echoed_by_its_start_and_size(command: list[str], frame: str) -> None:
    for args, stdin in (([*command, frame], None), (command, frame + "\n")):  # an argument, a line of stdin
        result = CliRunner().invoke(app, args, input=stdin)
        assert result.exit_code == 1, result.output[:500]
        (line,) = result.output.splitlines()
        assert len(line) < WORDS, line[:500]
        size = "50000 bytes" if frame.startswith("68") else "100000 characters"
        assert json.loads(line)["input"] == f"{frame[:HEAD]}… ({size})"


@pytest.mark.parametrize(
    "args",
    [
        ["collector", "vee", "--database-url", "postgresql://127.0.0.1:1/none", "--to", "2026-01-02", "--from"],
        ["simulate", "modbus-tcp", "--port", "0", "--installed"],
    ],
)
def test_a_long_time_option_is_quoted_by_its_start_and_length(args: list[str]) -> None:
    value = "2026-01-01T00:00:00Z" + "0" * 99_980
    result = CliRunner().invoke(app, [*args, value], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output[:500]
    assert len(result.output) < 2_000, result.output[:500]
    assert f"{value[:HEAD]!r}… (100000 characters)" in result.output, result.output
