"""A job card's register in METERS.csv (``initial_register_m3``, ``final_register_m3``) is a plain
decimal: spaces and tabs around it are a spreadsheet's padding and are taken off, as around every
field of the project's CSV files; a line break, a plus sign, digits grouped with ``_``, digits of
another script or an exponent (a spreadsheet's rounded 1.23457E+05) are refused, naming the row and
the field. Before, ``Decimal`` took all of these
(``"12\\n"``, ``"+12"``, ``"1_2"``, ``"١٢"`` were each recorded as register 12)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app

FITTED = "2019-05-02T08:00:00Z"
REMOVED = "2020-05-02T08:00:00Z"
HEADER = [
    "meter_id",
    "dma",
    "role",
    "service_point_id",
    "installed_at",
    "removed_at",
    "initial_register_m3",
    "final_register_m3",
]
COLUMNS = ("initial_register_m3", "final_register_m3")


def write(path: Path, initial: str, final: str) -> None:
    """METERS.csv of one good row (line 2) and the row under test (line 3), quoted as csv quotes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerow(["GOOD", "D1", "customer", "SP-1", FITTED, "", "1.5", ""])
    writer.writerow(["M1", "D1", "customer", "SP-2", FITTED, REMOVED, initial, final])
    path.write_text(out.getvalue(), encoding="utf-8")


def register(path: Path, url: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["server", "register-meters", str(path), "--database-url", url], env={"COLUMNS": "400"}
    )
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def stored(url: str) -> list[tuple[str, Decimal | None, Decimal | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT meter_id, initial_register_m3, final_register_m3 FROM meter_installations ORDER BY meter_id"
        ).fetchall()
    return [(str(m), i, f) for m, i, f in rows]


registers = st.decimals(min_value=0, max_value=99_999, places=3, allow_nan=False, allow_infinity=False)
padding = st.text(alphabet=" \t", max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=registers, left=padding, right=padding, column=st.sampled_from(COLUMNS))
def test_a_register_padded_with_spaces_or_tabs_is_the_register(
    migrated_database_url: str, tmp_path: Path, value: Decimal, left: str, right: str, column: str
) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE meter_installations, meters CASCADE")
    path = tmp_path / "meters.csv"
    text = f"{left}{value}{right}"
    write(path, *((text, "") if column == COLUMNS[0] else ("", text)))
    code, output = register(path, migrated_database_url)
    assert code == 0, output
    expected = (value, None) if column == COLUMNS[0] else (None, value)
    assert stored(migrated_database_url) == [("GOOD", Decimal("1.5"), None), ("M1", *expected)]


NOT_A_REGISTER = [
    ("12\n", "has a line break"),
    ("\n12", "has a line break"),
    ("1\r\n2", "has a line break"),
    ("+12", "is not a decimal number"),
    ("1_2", "is not a decimal number"),
    ("١٢", "is not a decimal number"),  # Arabic-Indic twelve
    ("１２", "is not a decimal number"),  # fullwidth twelve
    ("12 m3", "is not a decimal number"),
    ("1 2", "is not a decimal number"),
    # a spreadsheet's number too wide for its column, rounded to what it showed: 123456.789 m³ was
    # recorded as 123457, 0.0004 as 0.0004 by luck; each is refused, the register's digits asked for
    ("1.23457E+05", "is in scientific notation, as a spreadsheet writes a number too wide for its column"),
    ("4E-04", "is in scientific notation"),
    ("12e3", "is in scientific notation"),
]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize(("text", "said"), NOT_A_REGISTER)
def test_a_register_that_is_no_plain_decimal_is_refused_by_row_and_field(
    migrated_database_url: str, tmp_path: Path, text: str, said: str, column: str
) -> None:
    path = tmp_path / "meters.csv"
    write(path, *((text, "") if column == COLUMNS[0] else ("", text)))
    code, output = register(path, migrated_database_url)
    assert code == 2, output
    assert f"{path}: row 3: {column} {text!r} {said}" in output, output
    assert stored(migrated_database_url) == []  # the file recorded whole or not at all
