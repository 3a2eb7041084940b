"""An installation or a service agreement recorded in error, withdrawn.

A clerk who keyed a job card against the wrong meter, or an agreement against the wrong service
point, could correct a row's dates but not take the row back: it billed the wrong customer for ever,
and the right row was refused as an overlap. ``aquami server withdraw-installation`` and
``withdraw-agreement`` take it out of the live records, keep it as withdrawn with who, when and why,
revise the billing periods it touched, and a file recording it again is refused unless the clerk
gives ``--reinstate-withdrawn``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from aquami.cli import app
from server.words import words_field, words_problem

HEADER = "meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3\n"
# M-1 was fitted at SP-1 on 1 October, M-2 at SP-2 on 15 November; the clerk keyed M-1's job card
# with M-2's number: M-2 at SP-1 from 1 October, which blocks both right rows as overlaps
TYPED_METERS = HEADER + (
    "M-1,D1,customer,,,,,\nM-2,D1,customer,SP-1,2026-10-01T00:00Z,,0.000,\n"  # row 3
)
RIGHT_METERS = HEADER + (
    "M-1,D1,customer,SP-1,2026-10-01T00:00Z,,0.000,\nM-2,D1,customer,SP-2,2026-11-15T00:00Z,,500.000,\n"
)
ACCOUNTS = "account_id,name,service_point_id,start_at,end_at\nACC-1,Ann,SP-1,2026-09-01T00:00Z,\n"
REASON = "M-1's job card keyed with M-2's number"
FITTED = datetime(2026, 10, 1, tzinfo=UTC)
M2_FITTED = datetime(2026, 11, 15, tzinfo=UTC)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def register(kind: str, path: Path, url: str, *more: str) -> tuple[int, str]:
    return run("server", f"register-{kind}", str(path), "--database-url", url, *more)


def bill(url: str, account: str) -> dict[str, Any]:
    code, output = run("bill", "determinants", "--period", "2026-11", "--account", account, "--database-url", url)
    assert code == 0, output
    (item,) = json.loads(output)["items"]
    return item


def stored(url: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def _reads(url: str) -> None:
    """Hourly to 1 December: M-1 from 0 m³ on 1 October at 0.01 m³ an hour, M-2 from 500 m³ on
    15 November at 0.02."""
    with psycopg.connect(url, autocommit=True) as conn:
        for meter, fitted, start, rate in (("M-1", FITTED, 0, "0.01"), ("M-2", M2_FITTED, 500, "0.02")):
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) SELECT %(meter)s, t, "
                "%(start)s + %(rate)s::numeric * extract(epoch FROM t - %(fitted)s) / 3600 "
                "FROM generate_series(%(fitted)s + interval '1 hour', '2026-12-01T00:00Z', '1 hour') t",
                {"meter": meter, "fitted": fitted, "start": start, "rate": rate},
            )


def _typed(tmp_path: Path, url: str) -> None:
    (tmp_path / "typed.csv").write_text(TYPED_METERS)
    (tmp_path / "right.csv").write_text(RIGHT_METERS)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    assert register("meters", tmp_path / "typed.csv", url)[0] == 0
    _reads(url)
    assert register("accounts", tmp_path / "accounts.csv", url)[0] == 0


def withdraw_m2(url: str, *more: str) -> tuple[int, str]:
    return run(
        "server",
        "withdraw-installation",
        "--meter-id",
        "M-2",
        "--installed-at",
        "2026-10-01T00:00:00Z",
        "--reason",
        REASON,
        "--by",
        "Ann Clerk",
        "--database-url",
        url,
        *more,
    )


def test_a_withdrawn_installation_frees_its_service_point_and_billing_bills_the_right_meter(
    tmp_path: Path, migrated_database_url: str
) -> None:
    url = migrated_database_url
    _typed(tmp_path, url)
    wrong = bill(url, "ACC-1")
    assert [line["meter_id"] for line in wrong["lines"]] == ["M-2"]  # Ann billed M-2's water
    code, output = register("meters", tmp_path / "right.csv", url)
    assert code == 2 and "a meter is in one place at a time" in output, output  # the typo blocks the right row

    code, output = withdraw_m2(url)
    assert code == 0, output
    said = json.loads(output.splitlines()[-1])
    assert (said["withdrawn"], said["meter_id"], said["service_point_id"]) == ("installation", "M-2", "SP-1")
    assert "384 read(s)" in output and "count for no account" in output  # M-2's reads kept, said so
    columns = ("service_point_id", "meter_id", "installed_at", "initial_register_m3", "withdrawn_by", "reason")
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT {', '.join(columns)}, withdrawn_at FROM withdrawn_installations").fetchone()
        logged = conn.execute(
            "SELECT account_id, meter_id, recorded_by FROM account_membership_changes WHERE recorded_at = %s",
            (row[-1],) if row else (None,),
        ).fetchall()
    assert row is not None and row[:-1] == ("SP-1", "M-2", FITTED, Decimal("0.000"), "Ann Clerk", REASON)
    assert row[-1].tzinfo is not None
    assert logged == [("ACC-1", "M-2", "Ann Clerk")]  # the membership change, as a correction's, under who
    assert stored(url, "meter_installations") == []

    code, output = register("meters", tmp_path / "right.csv", url)
    assert code == 0, output
    right = bill(url, "ACC-1")
    (line,) = right["lines"]
    assert line["meter_id"] == "M-1"
    # M-1 from 0.01 m³ an hour: November's 30 days, from the 1 November read to the 1 December one
    assert Decimal(right["consumption_m3"]) == Decimal("0.01") * 30 * 24
    assert right["as_of"] > wrong["as_of"]  # the period says it was revised


def test_the_old_file_registered_again_is_refused_unless_the_clerk_reinstates_the_row(
    tmp_path: Path, migrated_database_url: str
) -> None:
    url = migrated_database_url
    _typed(tmp_path, url)
    assert withdraw_m2(url)[0] == 0
    before = (stored(url, "meter_installations"), stored(url, "withdrawn_installations"))

    code, output = register("meters", tmp_path / "typed.csv", url)
    assert code == 2, output
    assert "row 3: meter M-2 at SP-1 from 2026-10-01T00:00:00Z was withdrawn at" in output
    assert "by Ann Clerk" in output and REASON in output and "--reinstate-withdrawn" in output
    assert (stored(url, "meter_installations"), stored(url, "withdrawn_installations")) == before

    # the same meter and time at another service point is the installation corrected: recorded
    (tmp_path / "m2.csv").write_text(HEADER + "M-2,D1,customer,SP-2,2026-10-01T00:00Z,,0.000,\n")
    assert register("meters", tmp_path / "m2.csv", url)[0] == 0

    # meant: the row recorded again (its installation moved back to SP-1), the withdrawal dated reinstated
    code, output = register("meters", tmp_path / "typed.csv", url, "--reinstate-withdrawn")
    assert code == 0, output
    assert json.loads(output) == {"registered": 2, "bulk": 0, "installations": 1, "reinstated": 1}
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT meter_id, service_point_id FROM meter_installations").fetchall() == [
            ("M-2", "SP-1")
        ]
        (reinstated,) = conn.execute("SELECT reinstated_at FROM withdrawn_installations").fetchone() or (None,)
    assert reinstated is not None
    assert register("meters", tmp_path / "typed.csv", url)[0] == 0  # reinstated: recorded again as any row


def test_a_withdrawn_agreement_frees_the_service_point_for_the_right_account(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """Bob moved into SP-2 on 1 September, keyed at SP-1, where Ann has lived since 15 August."""
    url = migrated_database_url
    (tmp_path / "right.csv").write_text(RIGHT_METERS)
    assert register("meters", tmp_path / "right.csv", url)[0] == 0
    _reads(url)
    header = "account_id,name,service_point_id,start_at,end_at\n"
    (tmp_path / "typed.csv").write_text(header + "ACC-2,Bob,SP-1,2026-09-01T00:00Z,\n")
    right = header + "ACC-1,Ann,SP-1,2026-08-15T00:00Z,\nACC-2,Bob,SP-2,2026-09-01T00:00Z,\n"
    (tmp_path / "right.csv").write_text(right)
    assert register("accounts", tmp_path / "typed.csv", url)[0] == 0
    wrong = bill(url, "ACC-2")
    assert [line["meter_id"] for line in wrong["lines"]] == ["M-1"]  # Bob billed Ann's water
    code, output = register("accounts", tmp_path / "right.csv", url)
    assert code == 2 and "two agreements on one service point at once" in output, output

    code, output = run(
        "server",
        "withdraw-agreement",
        "--service-point-id",
        "SP-1",
        "--start-at",
        "2026-09-01",
        "--reason",
        "Bob moved into SP-2, keyed at SP-1",
        "--by",
        "Ann Clerk",
        "--database-url",
        url,
    )
    assert code == 0, output
    assert json.loads(output) == {
        "withdrawn": "agreement",
        "withdrawal_id": 1,
        "account_id": "ACC-2",
        "service_point_id": "SP-1",
        "start_at": "2026-09-01T00:00:00Z",
        "end_at": None,
    }
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT account_id, service_point_id, withdrawn_by, reason FROM withdrawn_agreements")
        assert row.fetchall() == [("ACC-2", "SP-1", "Ann Clerk", "Bob moved into SP-2, keyed at SP-1")]
    code, output = register("accounts", tmp_path / "right.csv", url)
    assert code == 0, output
    ann, bob = bill(url, "ACC-1"), bill(url, "ACC-2")
    assert [line["meter_id"] for line in ann["lines"]] == ["M-1"]
    assert [line["meter_id"] for line in bob["lines"]] == ["M-2"]
    assert Decimal(ann["consumption_m3"]) == Decimal("0.01") * 30 * 24
    assert Decimal(bob["consumption_m3"]) == Decimal("0.02") * 16 * 24  # from its card on 15 November
    assert bob["as_of"] > wrong["as_of"]

    before = stored(url, "service_agreements")
    code, output = register("accounts", tmp_path / "typed.csv", url)
    assert code == 2, output
    assert "row 2: account ACC-2's agreement on SP-1 from 2026-09-01T00:00:00Z was withdrawn at" in output
    assert stored(url, "service_agreements") == before


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["withdraw-installation", "--meter-id", "M-2", "--installed-at", "2026-10-02"],
            "no installation of meter M-2 from 2026-10-02T00:00:00Z is recorded; its installations: at SP-1 from "
            "2026-10-01T00:00:00Z to still open",
        ),
        (
            ["withdraw-installation", "--meter-id", "M-1", "--installed-at", "2026-10-01"],
            "no installation of meter M-1 from 2026-10-01T00:00:00Z is recorded: the meter has none",
        ),
        (
            ["withdraw-agreement", "--service-point-id", "SP-1", "--start-at", "2026-09-02"],
            "no agreement on service point SP-1 from 2026-09-02T00:00:00Z is recorded; its agreements: account "
            "ACC-1 from 2026-09-01T00:00:00Z to still open",
        ),
        (
            ["withdraw-agreement", "--service-point-id", "SP-9", "--start-at", "2026-09-01"],
            "the service point has none",
        ),
        (["withdraw-installation", "--meter-id", "M-2", "--installed-at", "2026-10-01", "--reason", " . "], "--reason"),
        (["withdraw-installation", "--meter-id", "M-2", "--installed-at", "2026-10-01", "--reason", "ok"], "--reason"),
        (
            ["withdraw-installation", "--meter-id", "M-2", "--installed-at", "2026-10-01", "--reason", "\u3164" * 5],
            "says nothing",
        ),
        (["withdraw-installation", "--meter-id", "M-2", "--installed-at", "2026-10-01", "--by", " "], "--by"),
        (["withdraw-installation", "--meter-id", "M 2", "--installed-at", "2026-10-01"], "--meter-id"),
    ],
)
def test_bad_input_is_refused_in_words_and_nothing_changes(
    tmp_path: Path, migrated_database_url: str, args: list[str], said: str
) -> None:
    url = migrated_database_url
    _typed(tmp_path, url)
    tables = ("meter_installations", "service_agreements", "withdrawn_installations", "withdrawn_agreements")
    before = [stored(url, table) for table in tables]
    given_options = set(args)
    defaults = [("--reason", REASON), ("--by", "Ann Clerk")]
    extra = [word for option, value in defaults if option not in given_options for word in (option, value)]
    code, output = run("server", *args, *extra, "--database-url", url)
    assert code == 2, output
    assert said in " ".join(output.split()), output
    assert "Traceback" not in output
    assert [stored(url, table) for table in tables] == before


class _Words(BaseModel):
    reason: str = words_field(500, "as an alert's dismissal")


_ALPHABET = st.sampled_from(
    ["a", "Z", "é", "ж", "字", "٣", "5", " ", "\t", ".", "-", "\u0301", "\u3164", "\u115f", "\u200b", "\x00", "\n"]
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(_ALPHABET, max_size=8) | st.text(max_size=8))
@example("::\U00031350")  # a CJK letter of Unicode 15: Python 3.11's unicodedata (Unicode 14) knows it not
def test_a_command_s_reason_is_words_as_the_api_s_reason_is(text: str) -> None:
    """words_problem refuses exactly what a request's words_field refuses (the same rule, one place each)."""
    try:
        _Words(reason=text)
        accepted = True
    except ValidationError:
        accepted = False
    assert (words_problem(text, 500) is None) == accepted, repr(text)
