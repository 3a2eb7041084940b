"""``aquami server register-meters`` and ``register-accounts`` name a bad row by the file's line, as
an editor numbers it and as ``aquami detect`` names it: blank lines (skipped) and a quoted field over
two lines counted. Before, register-meters counted the rows read (``row + 2``), so after a blank line
its refusals, the overlap's among them, named a row above the one at fault: a blank line, or
another meter's row."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app

FITTED = "2019-05-02T08:00:00Z"
METERS_HEADER = "meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3"
ACCOUNTS_HEADER = "account_id,name,service_point_id,start_at,end_at"


@dataclass(frozen=True)
class Fault:
    """A bad row (beginning with ``starts``, which no other row does) and what its refusal says."""

    row: str
    starts: str
    said: str


#: register-meters' refusals of a row, each raised where it was numbered by the rows read: the
#: installation checks and the job cards' registers (_installations), the meter id check (the command)
METER_FAULTS = (
    Fault(f"BAD,D1,customer,SP 9,{FITTED},,", "BAD,", "service_point_id 'SP 9' is no identifier"),
    Fault(f'BAD,D1,customer,"SP\n9",{FITTED},,', "BAD,", "service_point_id 'SP\\n9' is no identifier"),
    Fault(f"BAD,D1,customer,,{FITTED},,", "BAD,", "an installation needs its service_point_id"),
    Fault("BAD,D1,customer,SP-9,,,", "BAD,", "service_point_id needs installed_at"),
    Fault(f"BAD,D1,customer,SP-9,{FITTED},,12 m3", "BAD,", "initial_register_m3 '12 m3' is not a decimal number"),
    Fault(f"BAD,D1,customer,SP-9,{FITTED},,-1", "BAD,", "initial_register_m3 '-1' is no register"),
    Fault(f"BAD X,D1,customer,SP-9,{FITTED},,", "BAD X,", "meter_id 'BAD X' is no name a gateway can send"),
    Fault(f"BAD,D1,pump,SP-9,{FITTED},,", "BAD,", "role must be customer or inlet"),  # the reader's own
)
ACCOUNT_FAULTS = (
    Fault("BAD X,N,SP-9,2026-01-01T00:00Z,", "BAD X,", "account_id 'BAD X' is no identifier"),
    Fault('BAD,"Ann\nSmith",SP-9,2026-01-01T00:00Z,', "BAD,", "name 'Ann\\nSmith' has a line break"),
    Fault("BAD,N,SP-9,yesterday,", "BAD,", "start_at"),
    Fault("BAD,N,SP-9,2026-02-01T00:00Z,2026-01-01T00:00Z", "BAD,", "end_at must be after start_at"),
)


def run(*args: str) -> tuple[int, str]:
    """The command's exit code and output, its error box's message joined into one line."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def spaced(header: str, rows: list[str], blanks: list[int], end: str) -> str:
    """The file: its header, then each row after that many blank lines, lines ending in ``end``."""
    lines = [header]
    for row, blank in zip(rows, blanks, strict=True):
        lines += [""] * blank + [row]
    return end.join(lines) + end


def named_line(output: str, path: Path) -> int:
    found = re.search(rf"{re.escape(str(path))}: row (\d+): ", output)
    assert found, output
    return int(found.group(1))


def files(faults: tuple[Fault, ...]) -> st.SearchStrategy[tuple[Fault, int, int, list[int], str]]:
    """A fault, the good rows before and after it, the blank lines before each row, the line end."""
    return st.tuples(st.sampled_from(faults), st.integers(0, 3), st.integers(0, 2)).flatmap(
        lambda drawn: st.tuples(
            st.just(drawn[0]),
            st.just(drawn[1]),
            st.just(drawn[2]),
            st.lists(st.integers(0, 3), min_size=drawn[1] + drawn[2] + 1, max_size=drawn[1] + drawn[2] + 1),
            st.sampled_from(["\n", "\r\n"]),
        )
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=files(METER_FAULTS))
def test_register_meters_names_a_bad_row_by_its_line_in_the_file(
    migrated_database_url: str, tmp_path: Path, drawn: tuple[Fault, int, int, list[int], str]
) -> None:
    fault, before, after, blanks, end = drawn
    good = [f"M{i},D1,customer,SP-{i},{FITTED},," for i in range(before + after)]
    text = spaced(METERS_HEADER, [*good[:before], fault.row, *good[before:]], blanks, end)
    path = tmp_path / "meters.csv"
    path.write_bytes(text.encode())
    code, output = run("server", "register-meters", str(path), "--database-url", migrated_database_url)
    assert code == 2 and fault.said in output, output
    line = named_line(output, path)
    assert text.split("\n")[line - 1].startswith(fault.starts), (line, text)  # the line an editor shows it on
    with psycopg.connect(migrated_database_url) as conn:  # the file recorded whole or not at all
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (0,)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=files(ACCOUNT_FAULTS))
def test_register_accounts_names_a_bad_row_by_its_line_in_the_file(
    migrated_database_url: str, tmp_path: Path, drawn: tuple[Fault, int, int, list[int], str]
) -> None:
    fault, before, after, blanks, end = drawn
    good = [f"ACC-{i},N,SP-{i},2026-01-01T00:00Z," for i in range(before + after)]
    text = spaced(ACCOUNTS_HEADER, [*good[:before], fault.row, *good[before:]], blanks, end)
    path = tmp_path / "accounts.csv"
    path.write_bytes(text.encode())
    code, output = run("server", "register-accounts", str(path), "--database-url", migrated_database_url)
    assert code == 2 and fault.said in output, output
    line = named_line(output, path)
    assert text.split("\n")[line - 1].startswith(fault.starts), (line, text)
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (0,)


@pytest.mark.parametrize("constraints", ["kept", "dropped"])
def test_register_meters_names_an_overlap_s_rows_by_their_lines(
    migrated_database_url: str, tmp_path: Path, constraints: str
) -> None:
    """The overlap refusal (server/meters/repository.py) names the rows it is given: the file's lines.
    Refused by the exclusion constraints where btree_gist exists, by the repository's own check where not."""
    if constraints == "dropped":
        with psycopg.connect(migrated_database_url, autocommit=True) as conn:
            for constraint in ("meter_installations_one_meter_per_point", "meter_installations_one_point_per_meter"):
                conn.execute(f"ALTER TABLE meter_installations DROP CONSTRAINT IF EXISTS {constraint}")
    path = tmp_path / "meters.csv"
    path.write_text(  # X-2 on line 4 and X-1 on line 8 (before: rows 3 and 5, a blank line and A-1's)
        f"{METERS_HEADER}\n\nA-0,D1,customer,SP-0,{FITTED},,\nX-2,D1,customer,SP-9,2026-02-01T00:00:00Z,,\n\n"
        "A-1,D1,customer,SP-1,2026-01-01T00:00:00Z,,\n\nX-1,D1,customer,SP-9,2026-01-01T00:00:00Z,2026-03-01T00:00:00Z,\n"
    )
    code, output = run("server", "register-meters", str(path), "--database-url", migrated_database_url)
    assert code == 2
    assert f"{path}: rows 4 and 8: a meter is in one place at a time" in output, output
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM meter_installations").fetchone() == (0,)


def test_register_accounts_names_a_row_against_what_is_recorded_by_its_line(
    migrated_database_url: str, tmp_path: Path
) -> None:
    """The refusals made once the database is read (an unknown service point, an overlap with an
    agreement recorded before) name the row by its line too, blank lines counted."""
    url = migrated_database_url
    meters = tmp_path / "meters.csv"
    meters.write_text(f"{METERS_HEADER}\nWM-1,D1,customer,SP-1,{FITTED},,\n")
    assert run("server", "register-meters", str(meters), "--database-url", url)[0] == 0
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(f"{ACCOUNTS_HEADER}\nACC-1,N,SP-1,2026-01-01T00:00Z,\n")
    assert run("server", "register-accounts", str(accounts), "--database-url", url)[0] == 0
    refusals = {
        f"{ACCOUNTS_HEADER}\n\n\nACC-2,M,SP-1,2026-06-01T00:00Z,\n": (
            "row 4: two agreements on one service point at once"
        ),
        f"{ACCOUNTS_HEADER}\n\nACC-1,N,SP-1,2026-01-01T00:00Z,\n\nACC-3,M,SP-7,2026-06-01T00:00Z,\n": (
            "row 5: unknown service point SP-7"
        ),
    }
    for text, said in refusals.items():
        accounts.write_text(text)
        code, output = run("server", "register-accounts", str(accounts), "--database-url", url)
        assert code == 2 and f"{accounts}: {said}" in output, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT account_id FROM service_agreements").fetchall() == [("ACC-1",)]
