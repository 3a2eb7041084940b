"""``aquami bill``: billing exports straight from the database (the same as ``GET /billing/…``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aquami import atomic_write
from aquami.cli_params import check_database_text, check_output_folder
from aquami.cli_text import checked_by, checked_text
from aquami.database_url import DATABASE_URL

if TYPE_CHECKING:
    import psycopg

PERIOD = typer.Option(
    ...,
    callback=checked_text("--period"),
    help="YYYY-MM (a month of the utility's calendar) or START/END (ISO 8601, end exclusive).",
)


def register(app: typer.Typer) -> None:
    bill_app = typer.Typer(help="Billing determinants and interval exports.", no_args_is_help=True)

    @bill_app.command("nem12")
    def nem12_command(
        database_url: str = DATABASE_URL,
        period: str = PERIOD,
        account: str = typer.Option(None, callback=checked_text("--account"), help="Only this account's meters."),
        sender: str = typer.Option("AQUAMI", callback=_participant("--sender"), help="100 record: from participant."),
        receiver: str = typer.Option(
            "BILLING", callback=_participant("--receiver"), help="100 record: to participant."
        ),
        out: Path = typer.Option(None, dir_okay=False, help="File to write (default: standard output)."),
    ) -> None:
        """Hourly consumption in the AEMO NEM12 layout (run `aquami collector vee` first)."""
        import psycopg

        from server.billing.nem12 import ZoneNotExportable, nem12_chunks, prepare, standard_time
        from server.billing.repository import utility_timezone

        _check_period(period)  # every mistake in the arguments said before connecting, whatever the database
        check_database_text(account, "--account")
        check_output_folder(out)
        with psycopg.connect(database_url) as conn:
            zone = utility_timezone(conn)
            start, end = _period(period, standard_time(zone))
            _check_account(conn, account)
            try:  # every error found before the file is opened
                export = prepare(conn, start, end, zone=zone, account=account, sender=sender, receiver=receiver)
            except ZoneNotExportable as error:  # no parameter is wrong: the database's zone
                typer.echo(f"error: {error}", err=True)
                raise typer.Exit(1) from None
            except ValueError as error:
                raise typer.BadParameter(str(error)) from None
            _write_chunks(nem12_chunks(conn, export), out)

    @bill_app.command("determinants")
    def determinants_command(
        database_url: str = DATABASE_URL,
        period: str = PERIOD,
        account: str = typer.Option(None, callback=checked_text("--account"), help="Only this account."),
        csv: bool = typer.Option(False, "--csv", help="CSV instead of JSON."),
        out: Path = typer.Option(None, dir_okay=False, help="File to write (default: standard output)."),
    ) -> None:
        """Consumption per account for a billing period, with opening and closing reads."""
        import json

        import psycopg
        from psycopg.rows import dict_row

        from server.billing import repository, service
        from server.billing.schemas import DeterminantPage

        _check_period(period)  # every mistake in the arguments said before connecting, whatever the database
        check_database_text(account, "--account")
        check_output_folder(out)
        with psycopg.connect(database_url, row_factory=dict_row) as conn:
            start, end = _period(period, repository.utility_timezone(conn))  # type: ignore[arg-type]
            _check_account(conn, account)
            rows = repository.determinant_lines(conn, start, end, account, None, None)  # type: ignore[arg-type]
        items = service.determinants(rows)
        if csv:
            text = service.to_csv(service.DETERMINANT_COLUMNS, service.determinant_csv_rows(items, start, end))
        else:
            page = DeterminantPage(start=start, end=end, items=items, next=None)  # the API's shape, times in UTC
            text = json.dumps(page.model_dump(mode="json", exclude={"next"}), indent=1) + "\n"
        _write(text, out)

    app.add_typer(bill_app, name="bill")


#: The offsets of the world's time zones run from UTC-12 to UTC+14.
_OFFSETS = (timedelta(hours=-12), timedelta(hours=14))


def _check_period(period: str) -> None:
    """Refuse, before the utility's zone is read from the database, a period no zone makes one: not
    YYYY-MM or START/END, no month 13, a date that is none, or one empty (end not after start) in
    every zone. A period empty in UTC may not be in the utility's zone (from a date to a date-time,
    the start's midnight moves with the zone): that one waits for the zone."""
    from server.billing.service import parse_period
    from server.problems import Problem

    try:
        parse_period(period, UTC)
    except Problem as problem:
        if problem.title == "Empty period" and any(_is_period(period, timezone(o)) for o in _OFFSETS):
            return
        raise typer.BadParameter(problem.detail, param_hint="--period") from None


def _is_period(period: str, zone: tzinfo) -> bool:
    from server.billing.service import parse_period
    from server.problems import Problem

    try:
        parse_period(period, zone)
    except Problem:
        return False
    return True


def _check_account(conn: psycopg.Connection[Any], account: str | None) -> None:
    """Refuse an ``--account`` no account has, as the API's 404 does: before, the command wrote an
    empty determinants file, or a NEM12 file of no meters, and exited 0, so a mistyped account read
    as one that used no water."""
    from aquami.excerpt import quoted
    from server.billing.repository import account_exists

    if account is not None and not account_exists(conn, account):
        raise typer.BadParameter(f"no account {quoted(account)}", param_hint="--account")


def _participant(option: str) -> Callable[[str], str]:
    """``--sender``'s or ``--receiver``'s callback: NEM12's 100 record names its participants by ids
    of up to 10 letters and digits (an empty one, a line break or a comma would add fields or
    records), said in those words whatever else is wrong with it (a 100,000-character one not
    echoed whole)."""

    def problem_of(participant: str) -> str | None:
        from server.billing.nem12 import PARTICIPANT_ID

        if re.fullmatch(PARTICIPANT_ID, participant):
            return None
        shown = repr(participant) if len(participant) <= 40 else f"a text of {len(participant)} characters"
        return f"{shown} is no participant id: up to 10 letters and digits"

    return checked_by(option, problem_of)


def _period(period: str, zone: tzinfo) -> tuple[datetime, datetime]:
    from server.billing.service import parse_period
    from server.problems import Problem

    try:
        return parse_period(period, zone)
    except Problem as problem:
        raise typer.BadParameter(problem.detail, param_hint="--period") from None


def _write_chunks(chunks: Iterable[str], out: Path | None) -> None:
    """Written as they come: a whole utility's NEM12 file is never held in memory."""
    if out is None:
        sys.stdout.writelines(chunks)
        return
    with atomic_write.replacing(out, newline="") as file:  # a failure midway leaves no half an export
        file.writelines(chunks)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write.write_text(out, text)
