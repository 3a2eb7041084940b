"""Accounts and service agreements from the utility's customer system (``aquami server
register-accounts``). Before, nothing in the product created them (only the demo inserted its own):
a utility following the README registered meters and service points, read them, and got billing
determinants with no items, as determinants are per account."""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from typer.testing import CliRunner

from aquami.cli import app
from server.accounts import register
from server.accounts.register import LINE_BREAKS, AccountsFileError, Agreement, read_accounts_csv, record_accounts

METERS = """meter_id,dma,role,bulk,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3
WM-1,D1,customer,false,SP-1,2026-01-01T00:00:00Z,,0,
WM-2,D1,customer,false,SP-2,2026-01-01T00:00:00Z,,0,
"""
ACCOUNTS = """account_id,name,service_point_id,start_at,end_at,billing_cycle
ACC-1,First tenant,SP-1,2026-01-01T00:00:00Z,2026-11-16T00:00:00Z,monthly
ACC-2,Second tenant,SP-1,2026-11-16T00:00:00Z,,monthly
ACC-3,A shop,SP-2,2026-01-01T00:00:00+01:00,,quarterly-A
"""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})  # rich's error box: a path on one line
    return result.exit_code, result.output


def test_registered_accounts_get_their_determinants(tmp_path: Path, migrated_database_url: str) -> None:
    url = migrated_database_url
    (tmp_path / "meters.csv").write_text(METERS)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    assert run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", url)[0] == 0
    with psycopg.connect(url, autocommit=True) as conn:
        for meter, rate in (("WM-1", "0.01"), ("WM-2", "0.02")):  # m³ an hour through November
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) SELECT %s, t, "
                "100 + %s::numeric * extract(epoch FROM t - '2026-11-01T00:00Z') / 3600 "
                "FROM generate_series('2026-11-01T00:00Z'::timestamptz, '2026-12-01T00:00Z', '1 hour') t",
                (meter, rate),
            )
    code, output = run("server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", url)
    assert code == 0, output
    assert json.loads(output) == {"accounts": 3, "agreements": 3}
    code, output = run("bill", "determinants", "--period", "2026-11", "--database-url", url)
    assert code == 0, output
    consumption = {item["account_id"]: Decimal(item["consumption_m3"]) for item in json.loads(output)["items"]}
    assert consumption == {"ACC-1": Decimal("3.6"), "ACC-2": Decimal("3.6"), "ACC-3": Decimal("14.4")}
    # recorded again, an agreement (its service point and start) takes the file's account and end
    (tmp_path / "moved.csv").write_text(
        "account_id,name,service_point_id,start_at\nACC-4,Third tenant,SP-1,2026-11-16T00:00:00Z\n"
    )
    code, output = run("server", "register-accounts", str(tmp_path / "moved.csv"), "--database-url", url)
    assert code == 0, output
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT account_id, service_point_id FROM service_agreements ORDER BY service_point_id, start_at"
        ).fetchall()
    assert rows == [("ACC-1", "SP-1"), ("ACC-4", "SP-1"), ("ACC-3", "SP-2")]


@pytest.mark.parametrize(
    ("then", "says"),
    [
        (  # a new agreement starting while the one recorded before runs
            "ACC-3,O,SP-2,2026-01-01T00:00Z,\nACC-2,M,SP-1,2026-06-01T00:00Z,\n",
            "row 3: two agreements on one service point at once: SP-1 from 2026-06-01T00:00:00Z, still running, "
            "and, recorded before and not in the file, account ACC-1's from 2026-01-01T00:00:00Z, until "
            "2026-09-01T00:00:00Z",
        ),
        (  # one recorded before, its end moved past the start of the next one recorded before
            "ACC-3,O,SP-2,2026-01-01T00:00Z,\nACC-0,L,SP-1,2025-01-01T00:00Z,2026-02-01T00:00Z\n",
            "row 3: two agreements on one service point at once: SP-1 from 2025-01-01T00:00:00Z, until "
            "2026-02-01T00:00:00Z, and, recorded before and not in the file, account ACC-1's from 2026-01-01T00:00:00Z",
        ),
        (  # one starting within one recorded before that has ended
            "ACC-2,M,SP-1,2026-08-01T00:00Z,2026-08-02T00:00+02:00\n",
            "row 2: two agreements on one service point at once: SP-1 from 2026-08-01T00:00:00Z, until "
            "2026-08-01T22:00:00Z, and, recorded before and not in the file, account ACC-1's",
        ),
    ],
)
def test_an_agreement_overlapping_one_recorded_before_is_refused_naming_its_row(
    tmp_path: Path, migrated_database_url: str, then: str, says: str
) -> None:
    """An agreement that overlaps one recorded before (not in the file) was refused by the database,
    naming the service point and both starts ("Key (service_point_id, tstzrange(start_at, end_at))=
    …"), but not the row to correct. Now the row is named by its line, with the agreement recorded
    before that it overlaps; nothing of the file is stored."""
    url = migrated_database_url
    (tmp_path / "meters.csv").write_text(METERS)
    assert run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", url)[0] == 0
    (tmp_path / "first.csv").write_text(
        "account_id,name,service_point_id,start_at,end_at\n"
        "ACC-0,L,SP-1,2025-01-01T00:00Z,2026-01-01T00:00Z\nACC-1,N,SP-1,2026-01-01T00:00Z,2026-09-01T00:00Z\n"
    )
    assert run("server", "register-accounts", str(tmp_path / "first.csv"), "--database-url", url)[0] == 0
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT * FROM service_agreements ORDER BY 1").fetchall()
    (tmp_path / "then.csv").write_text("account_id,name,service_point_id,start_at,end_at\n" + then)
    code, output = run("server", "register-accounts", str(tmp_path / "then.csv"), "--database-url", url)
    said = " ".join(output.replace("│", " ").split())
    assert code == 2 and f"Invalid value for ACCOUNTS: {tmp_path / 'then.csv'}: {says}" in said, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT * FROM service_agreements ORDER BY 1").fetchall() == before
        assert conn.execute("SELECT account_id FROM accounts ORDER BY 1").fetchall() == [("ACC-0",), ("ACC-1",)]


def test_an_agreement_recorded_before_and_listed_again_is_not_taken_for_an_overlap(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """The check against the agreements recorded before leaves out those the file lists: they take
    the file's end (a move-out) before the new ones are written."""
    url = migrated_database_url
    (tmp_path / "meters.csv").write_text(METERS)
    assert run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", url)[0] == 0
    (tmp_path / "first.csv").write_text(
        "account_id,name,service_point_id,start_at,end_at\nACC-1,N,SP-1,2026-01-01T00:00Z,\n"
    )
    assert run("server", "register-accounts", str(tmp_path / "first.csv"), "--database-url", url)[0] == 0
    (tmp_path / "then.csv").write_text(
        "account_id,name,service_point_id,start_at,end_at\n"
        "ACC-2,M,SP-1,2026-06-01T00:00Z,\nACC-1,N,SP-1,2026-01-01T01:00+01:00,2026-06-01T00:00Z\n"
    )
    code, output = run("server", "register-accounts", str(tmp_path / "then.csv"), "--database-url", url)
    assert code == 0 and json.loads(output) == {"accounts": 2, "agreements": 2}, output


def test_a_row_listed_twice_alike_is_one_agreement(tmp_path: Path, migrated_database_url: str) -> None:
    """Rows alike (the same agreement, written with another offset, or the same account) are
    recorded once and counted once: before, {"agreements": 2} for one."""
    (tmp_path / "meters.csv").write_text(METERS)
    assert (
        run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", migrated_database_url)[0] == 0
    )
    (tmp_path / "accounts.csv").write_text(
        "account_id,name,service_point_id,start_at\n"
        "ACC-1,Ann,SP-1,2026-01-01T00:00Z\nACC-1,Ann ,SP-1,2026-01-01T01:00+01:00\nACC-1,Ann,SP-2,2026-01-01T00:00Z\n"
    )
    code, output = run(
        "server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", migrated_database_url
    )
    assert code == 0, output
    assert json.loads(output) == {"accounts": 1, "agreements": 2}
    with psycopg.connect(migrated_database_url) as conn:
        rows = conn.execute("SELECT account_id, service_point_id FROM service_agreements ORDER BY 2").fetchall()
    assert rows == [("ACC-1", "SP-1"), ("ACC-1", "SP-2")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("account_id,name,start_at\n", "missing column(s) service_point_id"),
        ("account_id,name,service_point_id,start_at,colour\n", "unknown column(s) colour"),
        # before, the last 'name' was read and the first dropped (this row's name was 'Bob')
        ("account_id,name,service_point_id,start_at,name\nACC-1,Ann,SP-1,2026-01-01T00:00Z,Bob\n", "named twice: name"),
        ("account_id,name,service_point_id,start_at\nACC 1,N,SP-1,2026-01-01T00:00Z\n", "account_id 'ACC 1'"),
        ("account_id,name,service_point_id,start_at\nACC-1,,SP-1,2026-01-01T00:00Z\n", "name: 1 to 200"),
        ("account_id,name,service_point_id,start_at\nACC-1,N,SP-1,2026-01-01T00:00\n", "needs a UTC offset"),
        ("account_id,name,service_point_id,start_at\nACC-1,N,SP-1,soon\n", "no ISO 8601 time"),
        # any character between the date and the time was taken (Python's fromisoformat): "x" or "€"
        (
            "account_id,name,service_point_id,start_at\nACC-1,N,SP-1,2026-01-01x00:00Z\n",
            "row 3: start_at '2026-01-01x00:00Z' is no ISO 8601 time",
        ),
        (
            "account_id,name,service_point_id,start_at\nACC-1,N,SP-1,2026-01-01€00:00Z\n",
            "row 3: start_at '2026-01-01€00:00Z' is no ISO 8601 time",
        ),
        (
            "account_id,name,service_point_id,start_at,end_at\nACC-1,N,SP-1,2026-02-01T00:00Z,2026-01-01T00:00Z\n",
            "end_at must be after start_at",
        ),
        # in the years 1 and 9999 as written, but not in UTC: a traceback (OverflowError) before
        (
            "account_id,name,service_point_id,start_at\nACC-1,N,SP-1,0001-01-01T00:00+01:00\n",
            "row 3: start_at '0001-01-01T00:00+01:00' is outside the years 1900 to 9998 in UTC",
        ),
        (
            "account_id,name,service_point_id,start_at,end_at\nACC-1,N,SP-1,2026-01-01T00:00Z,9999-12-31T23:00-02:00\n",
            "row 3: end_at '9999-12-31T23:00-02:00' is outside the years 1900 to 9998 in UTC",
        ),
        # rows that record one agreement or one account differently: before, the last listed was recorded
        (
            "account_id,name,service_point_id,start_at\n"
            "ACC-1,Ann,SP-1,2026-01-01T00:00Z\nACC-2,Bob,SP-1,2026-01-01T01:00+01:00\n",
            "row 3 and row 4 record the agreement on SP-1 from 2026-01-01T00:00:00Z differently: "
            "account_id 'ACC-1' and 'ACC-2'",
        ),
        (
            "account_id,name,service_point_id,start_at,end_at\n"
            "ACC-1,Ann,SP-1,2026-01-01T00:00Z,\nACC-1,Ann,SP-1,2026-01-01T00:00Z,2026-06-01T00:00Z\n",
            "row 3 and row 4 record the agreement on SP-1 from 2026-01-01T00:00:00Z differently: "
            "end_at none and 2026-06-01T00:00:00Z",
        ),
        (
            "account_id,name,service_point_id,start_at,end_at\n"
            "ACC-1,Ann,SP-1,2026-01-01T00:00Z,2026-02-01T00:00Z\nACC-1,Annie,SP-1,2026-02-01T00:00Z,\n",
            "row 3 and row 4 record account ACC-1 differently: name 'Ann' and 'Annie'",
        ),
        (
            "account_id,name,service_point_id,start_at,end_at,billing_cycle\n"
            "ACC-1,Ann,SP-1,2026-01-01T00:00Z,2026-02-01T00:00Z,monthly\nACC-1,Ann,SP-1,2026-02-01T00:00Z,,\n",
            "row 3 and row 4 record account ACC-1 differently: billing_cycle 'monthly' and none",
        ),
        # a name over two lines (quoted): before, stored as 'AnnSmith'
        (
            'account_id,name,service_point_id,start_at\nACC-1,"Ann\nSmith",SP-1,2026-01-01T00:00Z\n',
            "row 3: name 'Ann\\nSmith' has a line break: it is one line on a bill",
        ),
        (
            "account_id,name,service_point_id,start_at,end_at,billing_cycle\n"
            'ACC-1,N,SP-1,2026-01-01T00:00Z,,"monthly\r\n"\n',
            "row 3: billing_cycle 'monthly\\r\\n' has a line break",
        ),
        # a time over two lines (quoted): a broken file, as a name over two is; before, its line break
        # was dropped and the time stored
        (
            'account_id,name,service_point_id,start_at\nACC-1,N,SP-1,"2026-01-01T00:00:00Z\n"\n',
            "row 3: start_at '2026-01-01T00:00:00Z\\n' has a line break: a time is one line",
        ),
        (
            'account_id,name,service_point_id,start_at,end_at\nACC-1,N,SP-1,2026-01-01T00:00Z,"\r\n2026-06-01T00:00Z"\n',
            "row 3: end_at '\\r\\n2026-06-01T00:00Z' has a line break",
        ),
        # rows are named by their line, blank lines counted (before: by the rows before them, "row 3")
        ("account_id,name,service_point_id,start_at\n\nACC 1,N,SP-1,2026-01-01T00:00Z\n", "row 4: account_id 'ACC 1'"),
        (
            "account_id,name,service_point_id,start_at\nACC-1,N,SP-9,2026-01-01T00:00Z\n",
            "row 3: unknown service point SP-9: register-meters records service points with their meters",
        ),
        (  # each unknown one by the row it is first given on (before: the points alone, no row)
            "account_id,name,service_point_id,start_at\nACC-1,N,SP-9,2026-01-01T00:00Z\n"
            "ACC-1,N,SP-8,2026-01-01T00:00Z\nACC-1,N,SP-9,2026-01-01T00:00Z\nACC-3,N,SP-7,2026-01-01T00:00Z\n",
            "row 3: unknown service point SP-9 (and 2 more: SP-8 at row 4, SP-7 at row 6): register-meters",
        ),
        (
            "account_id,name,service_point_id,start_at\nACC-1,N,SP-1,2026-01-01T00:00Z\nACC-2,M,SP-1,2026-06-01T00:00Z\n",
            "row 3 and row 4: two agreements on one service point at once: "
            "SP-1 from 2026-01-01T00:00:00Z, still running, and from 2026-06-01T00:00:00Z",
        ),
        (
            "account_id,name,service_point_id,start_at,end_at\n"
            "ACC-2,M,SP-1,2026-06-01T00:00Z,\nACC-1,N,SP-1,2026-01-01T00:00Z,2026-07-01T00:00Z\n",
            "row 3 and row 4: two agreements on one service point at once: "
            "SP-1 from 2026-01-01T00:00:00Z, until 2026-07-01T00:00:00Z, and from 2026-06-01T00:00:00Z",
        ),
    ],
)
def test_a_file_that_cannot_be_recorded_is_refused_whole_naming_why(
    tmp_path: Path, migrated_database_url: str, text: str, message: str
) -> None:
    (tmp_path / "meters.csv").write_text(METERS)
    assert (
        run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", migrated_database_url)[0] == 0
    )
    lines = text.split("\n")[:-1]  # (the line ends of a quoted field kept)
    good = "ACC-0,Kept out,SP-2,2026-01-01T00:00Z" + "," * (lines[0].count(",") - 3)  # a row before the bad one
    (tmp_path / "accounts.csv").write_text("\n".join([lines[0], good, *lines[1:]]) + "\n")
    code, output = run(
        "server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", migrated_database_url
    )
    assert code == 2 and message in " ".join(output.replace("│", " ").split())  # as one line, without its box, output
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (0,)  # the good row neither
        assert conn.execute("SELECT count(*) FROM service_agreements").fetchone() == (0,)


#: The years a stored time is held to (aquami.stored_times), in UTC
EARLIEST, PAST_LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
#: Wall times anywhere in the calendar, most at the two ends of it and of the years stored, where an
#: offset can carry them across
WALL_TIMES = st.one_of(
    *(
        st.datetimes(min_value=edge - timedelta(days=2), max_value=edge + timedelta(days=2))
        for edge in (datetime(1900, 1, 1), datetime(9999, 1, 1))
    ),
    st.datetimes(max_value=datetime.min + timedelta(days=2)),
    st.datetimes(min_value=datetime.max - timedelta(days=2)),
    st.datetimes(),
)


@given(wall=WALL_TIMES, offset=st.integers(-(24 * 60 - 1), 24 * 60 - 1), column=st.sampled_from(["start_at", "end_at"]))
def test_any_time_with_an_offset_is_read_in_utc_or_refused_naming_its_row(
    wall: datetime, offset: int, column: str
) -> None:
    """A time is read as the instant it names, in UTC, when that is within the years 1900 to 9998,
    or the file is refused naming the row and column: before, one whose UTC date fell outside the
    calendar (0001-01-01T00:00+01:00) raised OverflowError, a traceback, and one in the year 1 was
    stored, which no session west of UTC could read back."""
    sign, minutes = ("-" if offset < 0 else "+"), abs(offset)
    text = f"{wall.isoformat()}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    try:
        instant: datetime | None = (wall - timedelta(minutes=offset)).replace(tzinfo=UTC)
    except OverflowError:
        instant = None
    other = "1900-01-01T00:00Z" if column == "end_at" else "9998-12-31T23:59:59.999999Z"
    start, end = (text, other) if column == "start_at" else (other, text)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "accounts.csv"
        path.write_text(f"account_id,name,service_point_id,start_at,end_at\nACC-1,N,SP-1,{start},{end}\n")
        if instant is None or not EARLIEST <= instant < PAST_LATEST:
            with pytest.raises(AccountsFileError, match=f"row 2: {column} .* outside the years 1900 to 9998 in UTC"):
                read_accounts_csv(path)
            return
        try:
            [agreement] = read_accounts_csv(path)
        except AccountsFileError as error:  # the instant is the other column's, at the bounds' end
            assert str(error).endswith("row 2: end_at must be after start_at"), error
            assert instant in (EARLIEST, PAST_LATEST - timedelta(microseconds=1))
            return
    read = agreement.start_at if column == "start_at" else agreement.end_at
    assert read == instant and read.tzinfo is UTC


#: Names with what a CSV file quotes or ends a line with among any other characters UTF-8 can write
NAMES = st.text(
    st.one_of(st.sampled_from([*sorted(LINE_BREAKS), ",", '"', " "]), st.characters(codec="utf-8")), max_size=12
)


@given(name=NAMES, cycle=NAMES)
def test_a_name_or_billing_cycle_is_kept_as_written_or_refused_naming_its_row(name: str, cycle: str) -> None:
    """A name (and a billing cycle), however the file quotes it, is read as written, less its outer
    blanks, or refused naming the row: a bill prints it on one line, so one with a line break is
    refused. Before, a quoted line break was dropped ("Ann<LF>Smith" read as "AnnSmith") and an
    unquoted U+2028 split its row in two."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["account_id", "name", "service_point_id", "start_at", "end_at", "billing_cycle"])
    writer.writerow(["ACC-0", "First", "SP-0", "2026-01-01T00:00Z", "", ""])
    writer.writerow(["ACC-1", name, "SP-1", "2026-01-01T00:00Z", "", cycle])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "accounts.csv"
        path.write_bytes(out.getvalue().encode())
        if LINE_BREAKS.intersection(name) or LINE_BREAKS.intersection(cycle):
            column = "name" if LINE_BREAKS.intersection(name) else "billing_cycle"
            with pytest.raises(AccountsFileError, match=f"row 3: {column} .* has a line break"):
                read_accounts_csv(path)
        elif not name.strip() or "\x00" in name:
            with pytest.raises(AccountsFileError, match="row 3: name: 1 to 200 characters"):
                read_accounts_csv(path)
        else:
            _first, second = read_accounts_csv(path)
            assert (second.name, second.billing_cycle) == (name.strip(), cycle.strip() or None)


#: A row drawn from few values, so that rows often meet on an agreement, an account or a service point
ROWS = st.tuples(
    st.sampled_from(["ACC-1", "ACC-2"]),
    st.sampled_from(["Ann", "Bob"]),
    st.sampled_from(["SP-1", "SP-2"]),
    st.sampled_from(
        [
            ("2026-01-01T00:00Z", ""),
            ("2026-01-01T01:00+01:00", "2026-03-01T00:00Z"),
            ("2026-01-01T00:00Z", "2026-06-01T00:00Z"),
            ("2026-03-01T00:00Z", ""),
            ("2026-03-01T00:00Z", "2026-06-01T00:00Z"),
            ("2026-06-01T00:00Z", ""),
        ]
    ),
    st.sampled_from(["", "monthly"]),
).map(lambda row: (*row[:3], *row[3], row[4]))


def _conflict(first: tuple[str, ...], then: tuple[str, ...]) -> bool:
    """Whether two rows record one agreement, or one account, differently, or are two agreements
    on one service point at once."""
    account, name, point, start, end, cycle = first

    def span(start: str, end: str) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(start), datetime.fromisoformat(end) if end else datetime.max.replace(tzinfo=UTC)

    (since, until), (then_since, then_until) = span(start, end), span(then[3], then[4])
    same_agreement = point == then[2] and since == then_since
    overlap = point == then[2] and since != then_since and since < then_until and then_since < until
    return (
        (same_agreement and (account, end) != (then[0], then[4]))
        or (account == then[0] and (name, cycle) != (then[1], then[5]))
        or overlap
    )


@given(rows=st.lists(ROWS, min_size=1, max_size=6))
def test_rows_that_conflict_are_refused_naming_both(rows: list[tuple[str, ...]]) -> None:
    """A file is refused, naming two rows that conflict, exactly when two of its rows record one
    agreement (service point and start) with another account or end, or one account with another
    name or billing cycle, or are two agreements on one service point at once; else each row is
    read. Before, the rows that record one thing differently were read and the last won, and an
    overlap was left to the database, which named no row."""
    text = "account_id,name,service_point_id,start_at,end_at,billing_cycle\n"
    text += "".join(",".join(row) + "\n" for row in rows)
    conflicting = any(_conflict(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "accounts.csv"
        path.write_text(text)
        if not conflicting:
            assert [a.line for a in read_accounts_csv(path)] == list(range(2, len(rows) + 2))
            return
        with pytest.raises(AccountsFileError) as refused:
            read_accounts_csv(path)
    named = re.search(
        r": row (\d+) and row (\d+)(?: record .* differently|: two agreements on one service point at once): ",
        str(refused.value),
    )
    assert named, refused.value
    first, then = int(named[1]), int(named[2])
    assert first < then and _conflict(rows[first - 2], rows[then - 2])


JAN, JUN, SEP, NOV = (datetime(2026, month, day, tzinfo=UTC) for month, day in ((1, 1), (6, 1), (9, 1), (11, 16)))
#: What the customer system sent before: a tenant on SP-1, a move on SP-2 in June
BEFORE = [
    Agreement("ACC-1", "First", "SP-1", JAN, None, None),
    Agreement("ACC-3", "Third", "SP-2", JAN, JUN, None),
    Agreement("ACC-4", "Fourth", "SP-2", JUN, None, None),
]
#: Then: a move on each service point recorded late, each a move-out of an agreement recorded before
#: and a move-in that is new; SP-2's first agreement again, unchanged
MOVES = [
    Agreement("ACC-1", "First", "SP-1", JAN, NOV, None),
    Agreement("ACC-2", "Second", "SP-1", NOV, None, None),
    Agreement("ACC-3", "Third", "SP-2", JAN, JUN, None),
    Agreement("ACC-4", "Fourth", "SP-2", JUN, SEP, None),
    Agreement("ACC-5", "Fifth", "SP-2", SEP, None, None),
]


def test_a_move_in_may_be_listed_before_the_move_out_it_follows(tmp_path: Path, migrated_database_url: str) -> None:
    """The rows of a file may come in any order, a move-in before the move-out it follows: the
    agreements recorded before are updated first, then the new ones written, so the agreements stored
    and the membership log (server migration 0052) are the same, and right, whatever the order. Before
    d78c216 (one statement a row, in the file's order) a move-in listed first overlapped the running
    agreement and the file was refused."""
    (tmp_path / "meters.csv").write_text(METERS)
    assert (
        run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", migrated_database_url)[0] == 0
    )
    inf = datetime.max.replace(tzinfo=UTC)  # (the log's 'infinity', as psycopg loads it)
    agreements = [
        ("ACC-1", "SP-1", JAN, NOV),
        ("ACC-2", "SP-1", NOV, None),
        ("ACC-3", "SP-2", JAN, JUN),
        ("ACC-4", "SP-2", JUN, SEP),
        ("ACC-5", "SP-2", SEP, None),
    ]
    # what the moves changed, and no more: each move-out from its new end on, each move-in whole
    logged = [
        ("ACC-1", "SP-1", "WM-1", NOV, inf),
        ("ACC-2", "SP-1", "WM-1", NOV, inf),
        ("ACC-4", "SP-2", "WM-2", SEP, inf),
        ("ACC-5", "SP-2", "WM-2", SEP, inf),
    ]

    @settings(max_examples=25)
    @given(order=st.permutations(MOVES))
    def recorded(order: list[Agreement]) -> None:
        with psycopg.connect(migrated_database_url) as conn, conn.transaction(force_rollback=True):
            record_accounts(conn, BEFORE)
            conn.execute("DELETE FROM account_membership_changes")
            assert record_accounts(conn, order) == (5, 5)
            stored = conn.execute(
                "SELECT account_id, service_point_id, start_at, end_at FROM service_agreements ORDER BY 2, 3"
            ).fetchall()
            changes = conn.execute(
                "SELECT account_id, service_point_id, meter_id, from_ts, "
                "CASE WHEN to_ts = 'infinity' THEN %s ELSE to_ts END FROM account_membership_changes ORDER BY 1, 2, 3",
                (inf,),
            ).fetchall()
        assert (stored, changes) == (agreements, logged)

    recorded()


#: Session time zones far from UTC either way: a BI tool or psql connects with its own; PostgreSQL
#: takes offsets up to 167 hours (a POSIX zone)
SESSION_ZONES = ["America/Los_Angeles", "Etc/GMT+12", "Etc/GMT-14", "UTC+167", "<EAST>-167"]


def _stored_agreements_in(url: str, zone: str) -> list[tuple[object, ...]]:
    """The agreements as a client of its own reads them, its session set to ``zone``."""
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(zone)))
        return conn.execute("SELECT account_id, start_at, end_at FROM service_agreements ORDER BY 1").fetchall()


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("0001-01-01T00:00:00Z", "", "row 2: start_at '0001-01-01T00:00:00Z' is outside the years 1900 to 9998 in UTC"),
        ("1899-12-31T23:59:59Z", "", "row 2: start_at '1899-12-31T23:59:59Z' is outside the years 1900 to 9998"),
        (
            "2026-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "row 2: end_at '9999-12-31T00:00:00Z' is outside the years 1900 to 9998 in UTC, which a database "
            "session in any time zone can show (an agreement still running has end_at empty)",
        ),
    ],
)
def test_a_time_a_session_west_or_east_of_utc_could_not_read_back_is_refused_naming_its_row(
    tmp_path: Path, migrated_database_url: str, start: str, end: str, says: str
) -> None:
    """0001-01-01T00:00:00Z was stored, and is in the year 1 BC in America/Los_Angeles (9999-12-31
    in the year 10000 east of UTC): a session there, a BI tool's, or a database whose TimeZone is
    the utility's, could not load the agreements back (psycopg: DataError), nor record a file again.
    It is refused, naming the row and column, and nothing is stored."""
    url = migrated_database_url
    (tmp_path / "meters.csv").write_text(METERS)
    assert run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", url)[0] == 0
    (tmp_path / "accounts.csv").write_text(
        f"account_id,name,service_point_id,start_at,end_at\nACC-1,N,SP-1,{start},{end}\n"
    )
    code, output = run("server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", url)
    assert code == 2 and says in " ".join(output.replace("│", " ").split()), output
    for zone in SESSION_ZONES:
        assert _stored_agreements_in(url, zone) == []


def test_the_earliest_and_latest_times_stored_are_read_back_in_any_session_zone(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """The bounds themselves are stored, and every session reads them back as they were written,
    whatever its TimeZone: a client's own connection (psql, a BI tool), and register-accounts again
    in a database whose TimeZone is far west of UTC."""
    url = migrated_database_url
    (tmp_path / "meters.csv").write_text(METERS)
    assert run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", url)[0] == 0
    earliest, latest = datetime(1900, 1, 1, tzinfo=UTC), datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    (tmp_path / "accounts.csv").write_text(
        "account_id,name,service_point_id,start_at,end_at\n"
        "ACC-1,N,SP-1,1900-01-01T00:00:00Z,9998-12-31T23:59:59.999999Z\n"
        "ACC-2,M,SP-2,1900-01-01T01:00:00+01:00,\n"
    )
    for zone in ("UTC", "Etc/GMT+12"):  # recorded again, in a database far west of UTC: it reads them back
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET TimeZone = {}").format(
                    sql.Identifier(conn.info.dbname), sql.Literal(zone)
                )
            )
        code, output = run("server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", url)
        assert code == 0, output
    for zone in SESSION_ZONES:
        assert _stored_agreements_in(url, zone) == [("ACC-1", earliest, latest), ("ACC-2", earliest, None)], zone


def test_blanks_around_a_time_are_dropped_as_around_a_name(tmp_path: Path) -> None:
    """Spaces and tabs around a time (a hand-edited file's ", 2026-...") are dropped, as around a
    name: only a line break in a field is taken for a broken file."""
    path = tmp_path / "accounts.csv"
    path.write_text(
        'account_id,name,service_point_id,start_at,end_at\nACC-1, Ann ,SP-1, 2026-01-01T00:00Z,"\t2026-06-01T00:00Z "\n'
    )
    [agreement] = read_accounts_csv(path)
    assert (agreement.name, agreement.start_at, agreement.end_at) == ("Ann", JAN, JUN)


def test_a_file_s_rows_are_checked_against_each_other_once(
    tmp_path: Path, migrated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """register-accounts ran refuse_conflicts twice over a file's rows: reading the file, then again
    in record_accounts (100,000 rows up to the first statement: 2.38 s of CPU, now 1.67 s). The rows read come as
    CheckedAgreements, which record_accounts does not check again. (The real refuse_conflicts runs;
    the passes over the file's rows are counted.)"""
    passes: list[int] = []
    real = register.refuse_conflicts

    def counted(agreements: Sequence[Agreement], source: str = "") -> None:
        passes.append(len(agreements))
        real(agreements, source)

    monkeypatch.setattr(register, "refuse_conflicts", counted)
    (tmp_path / "meters.csv").write_text(METERS)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    assert (
        run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", migrated_database_url)[0] == 0
    )
    code, output = run(
        "server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", migrated_database_url
    )
    assert code == 0 and json.loads(output) == {"accounts": 3, "agreements": 3}, output
    assert passes == [3]


def test_agreements_given_without_a_file_are_still_checked_against_each_other(migrated_database_url: str) -> None:
    """A caller passing agreements of its own (not read from a file) keeps the protection: two that
    record one agreement differently are refused, naming both, and nothing is stored; and
    CheckedAgreements is a tuple of frozen agreements, so rows cannot be added or changed after
    their check."""
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1')")
        conn.commit()
        conflicting = [
            Agreement("ACC-1", "Ann", "SP-1", JAN, None, None),
            Agreement("ACC-2", "Bob", "SP-1", JAN, None, None),
        ]
        refused = pytest.raises(AccountsFileError, match="agreement 1 and agreement 2 record the agreement on SP-1")
        with refused, conn.transaction():
            record_accounts(conn, conflicting)
        assert conn.execute("SELECT count(*) FROM service_agreements").fetchone() == (0,)
    rows = register.checked(conflicting[:1])
    assert isinstance(rows, tuple)
    with pytest.raises(AttributeError):
        rows.append(conflicting[1])  # type: ignore[attr-defined]


def test_a_row_refused_against_what_is_recorded_names_the_file_as_register_meters_does(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """A row the file alone cannot tell wrong (an unknown service point, an agreement overlapping one
    recorded before) was said without the file ("row 2: unknown service point SP-9"), where the
    file's own faults, and register-meters', say ``FILE: row N: …``; register-meters' own refusal by
    the database (a place with two meters at once) named no file either. Each now names it, once."""
    url = migrated_database_url
    meters = tmp_path / "meters.csv"
    meters.write_text(METERS)
    assert run("server", "register-meters", str(meters), "--database-url", url)[0] == 0
    first = tmp_path / "first.csv"
    first.write_text("account_id,name,service_point_id,start_at\nACC-1,N,SP-1,2026-01-01T00:00Z\n")
    assert run("server", "register-accounts", str(first), "--database-url", url)[0] == 0
    refused = {
        "unknown.csv": ("ACC-2,M,SP-9,2026-01-01T00:00Z", "row 2: unknown service point SP-9"),
        "overlap.csv": ("ACC-2,M,SP-1,2026-06-01T00:00Z", "row 2: two agreements on one service point at once"),
        "not_an_id.csv": ("ACC 2,M,SP-1,2026-06-01T00:00Z", "row 2: account_id 'ACC 2' is no identifier"),
    }
    for name, (row, says) in refused.items():
        path = tmp_path / name
        path.write_text(f"account_id,name,service_point_id,start_at\n{row}\n")
        code, output = run("server", "register-accounts", str(path), "--database-url", url)
        said = " ".join(output.replace("│", " ").split())
        assert code == 2 and f"Invalid value for ACCOUNTS: {path}: {says}" in said, output
        assert f"{path}: {path}" not in said, output
    clash = tmp_path / "clash.csv"
    clash.write_text("meter_id,dma,role,service_point_id,installed_at\nWM-3,D1,customer,SP-1,2026-02-01T00:00:00Z\n")
    code, output = run("server", "register-meters", str(clash), "--database-url", url)
    said = " ".join(output.replace("│", " ").split())
    assert code == 2 and f"Invalid value for METERS: {clash}: row 2: a meter is in one place at a time" in said, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT account_id FROM service_agreements").fetchall() == [("ACC-1",)]
        assert conn.execute("SELECT count(*) FROM meters WHERE meter_id = 'WM-3'").fetchone() == (0,)


def test_a_file_not_in_utf8_is_refused_naming_the_row_and_what_to_do(tmp_path: Path) -> None:
    """Before, Python's own words and no row: ``'utf-8' codec can't decode byte 0xe9 in position 97``
    (METERS.csv's reader says the row and to save the file as UTF-8)."""
    path = tmp_path / "accounts.csv"
    lines = ACCOUNTS.encode().splitlines()
    path.write_bytes(
        b"\n".join([*lines[:2], "A-9,Ren\u00e9e Caf\u00e9,SP-1,2026-01-01T00:00:00Z,,quarterly".encode("latin-1")])
    )
    with pytest.raises(AccountsFileError) as refused:
        read_accounts_csv(path)
    assert str(refused.value) == f"{path}: row 3: not UTF-8 (invalid continuation byte): save the file as UTF-8"
