"""``aquami server``: the HTTP API and web UI, API keys, and meters registered from a file."""

from __future__ import annotations

import errno
import importlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aquami.cli_params import floor_lag_warning_option, iso_datetime
from aquami.cli_text import (
    URL_MAX_LENGTH,
    checked_by,
    checked_host,
    checked_http_url,
    checked_identifier,
    checked_text,
    text_problem,
)
from aquami.database_url import DATABASE_URL, SERVICE_DATABASE_URL
from aquami.exit_codes import CONFIG, FAILED

if TYPE_CHECKING:
    from collector.detection.files.meters import Meters
    from server.meters.repository import Installation


def register(app: typer.Typer) -> None:
    server_app = typer.Typer(help="The HTTP API and web UI.", no_args_is_help=True)

    @server_app.command("run")
    def run(
        database_url: str = SERVICE_DATABASE_URL,
        host: str = typer.Option("127.0.0.1", envvar="AQUAMI_HOST", callback=checked_host("--host")),
        port: int = typer.Option(8000, min=0, max=65535, envvar="AQUAMI_PORT"),
        floor_lag_warning: float = floor_lag_warning_option("billing's next_changed_since"),
        cors_origin: list[str] = typer.Option(
            [],
            "--cors-origin",
            envvar="AQUAMI_CORS_ORIGINS",
            callback=_checked_by_server("--cors-origin", "server.cors", "allowed_origin"),
            help="An origin whose web pages may call Open311 from a browser (https://app.example.org); "
            "once per origin. None: no CORS.",
        ),
        allowed_host: list[str] = typer.Option(
            [],
            "--allowed-host",
            envvar="AQUAMI_ALLOWED_HOSTS",
            callback=_checked_by_server("--allowed-host", "server.hosts", "allowed_host"),
            help="A host name the server answers for (water.example.org, *.example.org, 10.0.0.7, ::1); once "
            "per name. None: any. Set it behind a proxy.",
        ),
    ) -> None:
        """Serve the API and the web page: not on a database the migrations have not been applied
        to (one line, exit 1); on one not reachable yet, answering 503 until it is."""
        import uvicorn

        from aquami.logging_setup import configure_logging, log_config
        from server.app import create_app
        from server.db import ask_at_start
        from server.listening import ServedOnBoundSocket, bound_socket, why_not
        from server.schema_check import SchemaCheck

        try:  # first: a port in use is said at once, in one line (server.listening)
            sock = bound_socket(host, port)
        except OSError as error:
            typer.echo(f"error: cannot listen on {host}:{port}: {why_not(error)}", err=True)
            # a port below 1024 without the privilege stays so until the port or the unit is edited:
            # EX_CONFIG, not restarted; one in use (its holder may go) or an address not up yet: exit 1
            raise typer.Exit(CONFIG if error.errno == errno.EACCES else FAILED) from None
        with sock:
            configure_logging()  # "database not reachable yet" in the server's own format
            schema = SchemaCheck()  # asked once, here, and handed to the app: its start-up asks no more
            problem = ask_at_start(database_url, schema)
            if problem is not None:  # said here: refused inside uvicorn's start-up, it was a 46-line traceback, exit 3
                # exit 1, started again: the collector migrates the database at its start, and the
                # code upgraded is run by the next start
                typer.echo(f"error: database: {problem}", err=True)
                raise typer.Exit(FAILED)
            config = uvicorn.Config(
                create_app(
                    database_url,
                    timedelta(seconds=floor_lag_warning),
                    asked=schema,
                    cors_origins=cors_origin,
                    allowed_hosts=allowed_host,
                ),
                host=host,
                port=port,
                proxy_headers=True,
                log_config=log_config(),
            )
            server = ServedOnBoundSocket(config)
            server.run(sockets=[sock])
            if not server.started:  # the app's start-up failed: said by uvicorn, exit 3 as uvicorn.run's
                raise typer.Exit(3)

    @server_app.command("create-key")
    def create_key(
        name: str = typer.Option(
            ...,
            callback=checked_text("--name", needs="a key needs a name saying who or what it is for"),
            help="Who or what the key is for.",
        ),
        role: list[str] = typer.Option(
            ...,
            "--role",
            callback=checked_text("--role"),
            help="Role(s): admin, reader, meterization, billing, customer_care, …",
        ),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Create an API key and print it (it is shown only this once)."""
        import psycopg

        from aquami.cli_params import check_database_text
        from server.auth import check_key_name, check_key_roles, create_api_key

        try:  # before connecting: a wrong role or name is said whatever the database
            check_key_roles(role)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--role") from None
        try:
            check_key_name(name)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--name") from None
        check_database_text(name, "--name")  # (a NUL is check_key_name's)
        with psycopg.connect(database_url, autocommit=True) as conn:
            typer.echo(create_api_key(conn, name, role))

    @server_app.command("list-keys")
    def list_keys(
        as_json: bool = typer.Option(False, "--json", help="One JSON object a line, for scripts."),
        database_url: str = DATABASE_URL,
    ) -> None:
        """List API keys (id, created, revoked, roles, name), revoked ones too; never a secret. A name
        that shows nothing, reads as the system's, or holds characters that show nothing (a key named
        before such names were refused) is shown with those characters written out (\\u200b) and a
        line under it saying so and what to do."""
        import json

        import psycopg

        from server.auth import key_name_problem, list_api_keys
        from server.visible import escaped

        with psycopg.connect(database_url, autocommit=True) as conn:
            keys = list_api_keys(conn)
        if as_json:
            for key in keys:
                record = {
                    "key_id": key.key_id,
                    "name": key.name,
                    "name_problem": key_name_problem(key.name),
                    "roles": list(key.roles),
                    "created_at": _utc(key.created_at),
                    "revoked_at": key.revoked_at and _utc(key.revoked_at),
                }
                typer.echo(json.dumps(record, ensure_ascii=False))
            return
        typer.echo(f"{'KEY_ID':<12}  {'CREATED':<20}  {'REVOKED':<20}  {'ROLES':<24}  NAME")
        for key in keys:
            revoked = _utc(key.revoked_at) if key.revoked_at else "-"
            typer.echo(
                f"{key.key_id:<12}  {_utc(key.created_at):<20}  {revoked:<20}  {','.join(key.roles):<24}  "
                f"{escaped(key.name)}"
            )
            problem = key_name_problem(key.name)
            if problem is not None and key.revoked_at is None:
                typer.echo(f"{'':<12}  ! {key.key_id}: {problem}")

    @server_app.command("revoke-key")
    def revoke_key(
        key_id: str = typer.Argument(
            ..., metavar="KEY_ID", callback=checked_text("KEY_ID"), help="The key's id (list-keys), or the key itself."
        ),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Revoke an API key: from now on it is refused (401), and a web page signed in with it is
        signed out. Revoking a revoked key changes nothing. To rotate a key: create-key a new one
        with the same roles, switch whatever used the old one to it, then revoke the old one."""
        import psycopg

        from aquami.cli_params import check_database_text
        from server.auth import key_id_of, revoke_api_key

        check_database_text(key_id, "KEY_ID")  # before connecting: said whatever the database
        key = key_id_of(key_id)
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                revoked_at, now = revoke_api_key(conn, key)
        except LookupError as error:
            raise typer.BadParameter(str(error), param_hint="KEY_ID") from error
        when = _utc(revoked_at)
        typer.echo(f"revoked {key} at {when}" if now else f"{key} was revoked at {when}")

    @server_app.command("sign-in-link")
    def sign_in_link(
        key_id: str = typer.Option(
            ...,
            "--key-id",
            callback=checked_text("--key-id"),
            help="The id of the key to sign in under (list-keys), or the key itself.",
        ),
        url: str = typer.Option(
            "http://127.0.0.1:8000",
            "--url",
            envvar="AQUAMI_SERVER_URL",
            callback=checked_http_url("--url"),
            help="The server's address as the browser reaches it.",
        ),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Print a one-time sign-in link for the web page: it signs a browser in under the key once,
        within 10 minutes, and leaves no key in the browser's history (a shared PC's); the browser
        stays signed in for a shift (12 hours), until it signs out or the key is revoked."""
        import psycopg

        from aquami.cli_params import check_database_text
        from server.auth import key_id_of
        from server.sign_in_links import make_link

        check_database_text(key_id, "--key-id")  # before connecting: said whatever the database
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                link = make_link(conn, key_id_of(key_id))
        except LookupError as error:
            raise typer.BadParameter(str(error), param_hint="--key-id") from error
        typer.echo(f"{url.rstrip('/')}/login?token={link.token}")
        typer.echo(f"(signs in once, until {_utc(link.expires_at)})", err=True)

    @server_app.command("register-meters")
    def register_meters_command(
        meters: Path = typer.Argument(
            ...,
            exists=True,
            dir_okay=False,
            help="METERS.csv: meter_id,dma,role[,bulk][,service_point_id,installed_at[,removed_at]]"
            "[,initial_register_m3][,final_register_m3]",
        ),
        reinstate_withdrawn: bool = typer.Option(
            False,
            "--reinstate-withdrawn",
            help="Record again the file's withdrawn rows (withdraw-installation); without it they are refused.",
        ),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Record meters as installed, from the file ``aquami detect`` reads (what meterization does
        when it fits them): each meter's DMA (a name of at most 500 characters, one line), its role
        (customer or inlet) and whether it is a bulk meter (many premises behind it). A meter registered again
        takes the file's values, and the service point it is in place at takes its district. Rows with
        ``service_point_id`` and ``installed_at`` (and ``removed_at`` once it was taken out) record where
        the meter was fitted, with
        ``initial_register_m3``/``final_register_m3`` as read on the job cards: billing reads across
        an exchange from them, and the DMA balance stops estimating an exchanged meter's use. A row
        that records a withdrawn installation again (``withdraw-installation``: same meter, service
        point and installation time) is refused unless ``--reinstate-withdrawn`` says it is meant. The
        file is recorded whole or not at all."""
        import json

        import psycopg

        from aquami.contracts.reads import is_identifier
        from aquami.excerpt import quoted
        from collector.detection.files.errors import CsvFormatError
        from collector.detection.files.meters import read_meters_csv
        from server.meters.meters_file import record_meters_file

        try:
            table = read_meters_csv(meters)
            installations = _installations(table, meters)
        except CsvFormatError as error:
            raise typer.BadParameter(str(error), param_hint="METERS") from error
        ids = table.meter_ids.tolist()
        for line, meter_id in zip(table.lines, ids, strict=True):  # each row by its line in the file
            if not is_identifier(meter_id):
                raise typer.BadParameter(
                    f"{meters}: row {line}: meter_id {quoted(meter_id)} is no name a gateway can send "
                    "(letters, digits and . _ : -, at most 64)",
                    param_hint="METERS",
                )
        bulk = None if table.bulk is None else set(table.meter_ids[table.bulk].tolist())  # None: not in the file
        rows = [
            (m, dma or None, role) for m, dma, role in zip(ids, table.dma.tolist(), table.role.tolist(), strict=True)
        ]
        try:
            with psycopg.connect(database_url) as conn, conn.transaction():
                recorded = record_meters_file(
                    conn, rows, bulk, installations, table.columns, reinstate_withdrawn=reinstate_withdrawn
                )
        except ValueError as error:  # what the database refuses of the file: named by it, as the file's rows are
            raise typer.BadParameter(f"{meters}: {error}", param_hint="METERS") from error
        for said in recorded.contradicted:  # recorded: a card may be right and its read wrong (README, METERS.csv)
            typer.echo(f"warning: {meters}: {said}", err=True)
        counts = {"registered": len(ids), "bulk": len(bulk or ()), "installations": len(installations)}
        if reinstate_withdrawn:
            counts["reinstated"] = recorded.reinstated
        typer.echo(json.dumps(counts))

    @server_app.command("register-accounts")
    def register_accounts_command(
        accounts: Path = typer.Argument(
            ...,
            exists=True,
            dir_okay=False,
            help="ACCOUNTS.csv: account_id,name,service_point_id,start_at[,end_at][,billing_cycle]",
        ),
        reinstate_withdrawn: bool = typer.Option(
            False,
            "--reinstate-withdrawn",
            help="Record again the file's rows that were withdrawn (withdraw-agreement); without it they are refused.",
        ),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Record accounts and their service agreements (which account pays for which service point,
        from when until when), from the utility's customer system: billing's determinants are per
        account. Service points must be registered first (``register-meters``); an agreement recorded
        again (same service point and start) takes the file's account and end. A row that records a
        withdrawn agreement again (``withdraw-agreement``: same account, service point and start) is
        refused unless ``--reinstate-withdrawn`` says it is meant. The file is recorded whole or not
        at all."""
        import json

        import psycopg

        from server.accounts.register import AccountsFileError, read_accounts_csv, record_accounts
        from server.accounts.withdrawals import refuse_withdrawn
        from server.withdrawal import WithdrawnAgain

        try:
            agreements = read_accounts_csv(accounts)  # its refusals name the file
        except AccountsFileError as error:
            raise typer.BadParameter(str(error), param_hint="ACCOUNTS") from error
        try:
            with psycopg.connect(database_url) as conn, conn.transaction():
                reinstated = refuse_withdrawn(conn, agreements, "", reinstate=reinstate_withdrawn)
                written, recorded = record_accounts(conn, agreements)
        # a row against what is recorded (an unknown service point, an overlap, a withdrawn agreement)
        except (AccountsFileError, WithdrawnAgain) as error:
            raise typer.BadParameter(f"{accounts}: {error}", param_hint="ACCOUNTS") from error
        counts = {"accounts": written, "agreements": recorded}
        if reinstate_withdrawn:
            counts["reinstated"] = reinstated
        typer.echo(json.dumps(counts))

    @server_app.command("withdraw-installation")
    def withdraw_installation_command(
        meter_id: str = typer.Option(..., callback=checked_identifier("--meter-id"), help="The meter, as recorded."),
        installed_at: datetime = typer.Option(
            ..., parser=iso_datetime, help="When it was recorded as fitted (its row's installed_at), ISO 8601 UTC."
        ),
        reason: str = REASON,
        by: str = BY,
        database_url: str = DATABASE_URL,
    ) -> None:
        """Withdraw an installation recorded in error (a job card keyed against the wrong service point
        or meter): it leaves the installations, so it bills no one and no longer blocks the right one
        as an overlap, and is kept as withdrawn with who, when and why. The billing periods it touched
        are revised (their as_of moves), as a correction's are. The meter's reads stay stored. A file
        that records it again is refused unless given ``--reinstate-withdrawn``."""
        import json

        import psycopg

        from server.meters.withdrawals import withdraw_installation
        from server.withdrawal import Withdrawal, WithdrawalRefused, shown

        try:
            with psycopg.connect(database_url) as conn, conn.transaction():
                done = withdraw_installation(conn, meter_id, installed_at, Withdrawal(by, reason))
        except WithdrawalRefused as error:
            raise typer.BadParameter(str(error), param_hint="--meter-id/--installed-at") from error
        if done.reads_in_span:
            typer.echo(
                f"note: meter {meter_id}'s {done.reads_in_span} read(s) from {shown(done.installed_at)} to "
                f"{shown(done.removed_at)} are kept, and count for no account until its right installation is "
                "recorded (register-meters)",
                err=True,
            )
        said = {
            "withdrawn": "installation",
            "withdrawal_id": done.withdrawal_id,
            "meter_id": done.meter_id,
            "service_point_id": done.service_point_id,
            "installed_at": shown(done.installed_at),
            "removed_at": done.removed_at and shown(done.removed_at),
        }
        typer.echo(json.dumps(said))

    @server_app.command("withdraw-agreement")
    def withdraw_agreement_command(
        service_point_id: str = typer.Option(
            ..., callback=checked_identifier("--service-point-id"), help="The agreement's service point."
        ),
        start_at: datetime = typer.Option(
            ..., parser=iso_datetime, help="The agreement's start as recorded (its row's start_at), ISO 8601 UTC."
        ),
        reason: str = REASON,
        by: str = BY,
        database_url: str = DATABASE_URL,
    ) -> None:
        """Withdraw a service agreement recorded in error (for the wrong account or service point): it
        leaves the agreements, so the account is no longer billed for the point and the right agreement
        is no longer refused as an overlap, and is kept as withdrawn with who, when and why. The
        account's billing periods it touched are revised (their as_of moves), as a correction's are. A
        file that records it again is refused unless given ``--reinstate-withdrawn``."""
        import json

        import psycopg

        from server.accounts.withdrawals import withdraw_agreement
        from server.withdrawal import Withdrawal, WithdrawalRefused, shown

        try:
            with psycopg.connect(database_url) as conn, conn.transaction():
                done = withdraw_agreement(conn, service_point_id, start_at, Withdrawal(by, reason))
        except WithdrawalRefused as error:
            raise typer.BadParameter(str(error), param_hint="--service-point-id/--start-at") from error
        said = {
            "withdrawn": "agreement",
            "withdrawal_id": done.withdrawal_id,
            "account_id": done.account_id,
            "service_point_id": done.service_point_id,
            "start_at": shown(done.start_at),
            "end_at": done.end_at and shown(done.end_at),
        }
        typer.echo(json.dumps(said))

    app.add_typer(server_app, name="server")


def _reason_problem(text: str) -> str | None:
    """Why ``text`` is no withdrawal's reason: one line (aquami.cli_text), and words as an alert's
    dismissal takes them (server.words, imported only when a reason is given)."""
    from server.withdrawal import REASON_MAX_LENGTH
    from server.words import words_problem

    return text_problem(text, REASON_MAX_LENGTH) or words_problem(text, REASON_MAX_LENGTH)


#: A withdrawal's reason, in words (kept with what was withdrawn).
REASON = typer.Option(
    ...,
    "--reason",
    callback=checked_by("--reason", _reason_problem),
    help='Why the row is withdrawn, in words (e.g. "keyed against SP-12, fitted at SP-21"); kept with it.',
)
#: Who withdraws a row: the command connects to the database without a key, so the person says who.
BY = typer.Option(
    ...,
    "--by",
    callback=checked_text("--by", needs="a withdrawal needs the name of who makes it"),
    help="Who withdraws it (your name, as the record should show).",
)


def _checked_by_server(option: str, module: str, check: str) -> Callable[[list[str]], list[str]]:
    """An option's callback: each value's text checked (aquami.cli_text), then by the server's own
    ``module.check``, which raises ValueError saying why the value is none (imported only when the
    option is given: the other commands do not load the server)."""

    def problem_of(text: str) -> str | None:
        problem = text_problem(text, URL_MAX_LENGTH)
        if problem is not None:
            return problem
        try:
            getattr(importlib.import_module(module), check)(text)
        except ValueError as error:
            return str(error)
        return None

    return checked_by(option, problem_of)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _installations(table: Meters, path: Path) -> list[Installation]:
    """The rows that say where a meter was fitted, with their job cards' registers; each refusal
    and installation names its row by the file's line (:attr:`Meters.lines`: blank lines and quoted
    fields over lines counted, as ``aquami detect`` names them; counting the rows read named
    another row, or a blank line, after the first blank line)."""
    from aquami.contracts.reads import is_identifier
    from aquami.excerpt import quoted
    from collector.detection.files.errors import CsvFormatError
    from server.meters.repository import Installation

    dated = {row: (since, until) for row, since, until in table.installations}
    found = []
    for row, meter_id in enumerate(table.meter_ids.tolist()):
        point = table.service_point_ids[row] if table.service_point_ids else ""
        since, until = dated.get(row, (None, None))
        initial, final = table.job_card_registers[row] if table.job_card_registers else ("", "")
        where = f"{path}: row {table.lines[row]}"
        if not point and (since or until or initial or final):
            raise CsvFormatError(f"{where}: an installation needs its service_point_id")
        if point and not is_identifier(point):
            raise CsvFormatError(
                f"{where}: service_point_id {quoted(point)} is no identifier "
                "(letters, digits and . _ : -, at most 64): NEM12 and the CSV exports could not carry it"
            )
        if point and since is None:
            raise CsvFormatError(f"{where}: service_point_id needs installed_at, when the meter was fitted")
        if final and until is None:
            raise CsvFormatError(f"{where}: final_register_m3 is read at the removal: it needs removed_at")
        if point and since is not None:
            found.append(
                Installation(
                    meter_id,
                    point,
                    str(table.dma[row]) or None,
                    since,
                    until,
                    _register(initial, "initial_register_m3", where),
                    _register(final, "final_register_m3", where),
                    row=table.lines[row],
                )
            )
    return found


def _register(text: str, column: str, where: str) -> Decimal | None:
    """A job card's register (m³, a decimal; empty: not read), within the reads contract's bounds.

    Spaces and tabs around it are the cell's padding (a spreadsheet's export), taken off by the
    file's reader; anything else ``Decimal`` would take is refused: a line break (a quoted field
    over two lines, a broken file), a plus sign, digits grouped with ``_``, digits of another script:
    before, ``"12\n"``, ``"+12"``, ``"1_2"`` and Arabic-Indic ``"١٢"`` were each recorded as 12."""
    import re

    from aquami.contracts.reads import VOLUME_MAX_M3
    from collector.detection.files.errors import CsvFormatError

    if not text:
        return None
    if "\n" in text or "\r" in text:
        raise CsvFormatError(f"{where}: {column} {text!r} has a line break: a register is one line")
    if re.fullmatch(_PLAIN_DECIMAL + _EXPONENT, text, re.ASCII):
        raise CsvFormatError(
            f"{where}: {column} {text!r} is in scientific notation, as a spreadsheet writes a number too wide "
            "for its column, rounded to the digits shown: write the register's digits as read on the card "
            "(format the column as a number with its decimals)"
        )
    if not re.fullmatch(_PLAIN_DECIMAL, text, re.ASCII):
        raise CsvFormatError(f"{where}: {column} {text!r} is not a decimal number (digits 0-9 and a decimal point)")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CsvFormatError(f"{where}: {column} {text!r} is not a decimal number") from None
    if not value.is_finite() or not 0 <= value <= VOLUME_MAX_M3:
        raise CsvFormatError(f"{where}: {column} {text!r} is no register (0 to {VOLUME_MAX_M3:g} m³)")
    if value and int(value.as_tuple().exponent) < -_REGISTER_DECIMALS:  # (1E-20000 overflows PostgreSQL's numeric)
        raise CsvFormatError(f"{where}: {column} {text!r} has more than {_REGISTER_DECIMALS} decimal places")
    return value


#: A register as a job card has one: ASCII digits with a decimal point; no plus sign, no digit
#: grouping (a minus is read, to be refused as below 0).
_PLAIN_DECIMAL = r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
#: An exponent after it: a spreadsheet's 1.23457E+05, the number rounded to what its column showed
#: (123456.789 m³ recorded as 123457), refused; before, it was taken as the register.
_EXPONENT = r"[eE][+-]?[0-9]+"

#: A job card's register to the microlitre (nine decimals of m³) at most.
_REGISTER_DECIMALS = 9
