"""The database URL, checked before anything connects: one line and exit 1 for one that is none
(78, ``EX_CONFIG``, from ``collector run`` and ``server run``: :data:`SERVICE_DATABASE_URL`).

A malformed URL (``postgresql//aquami:S3cretDB@db/aquami``, its colon missing) was found out only
by each connection: the server finished starting, /health answered 200 and every API call 503 "try
again shortly", while psycopg_pool logged the whole URL, password and all, about every 7 s; the
collector's commands printed it too. Every command's ``--database-url`` (``AQUAMI_DATABASE_URL``)
is read with :data:`DATABASE_URL`, so each is checked, and said with its password hidden.
"""

from __future__ import annotations

import typer

from aquami.exit_codes import CONFIG, FAILED
from aquami.redact import hide_password, redacted


class BadDatabaseUrl(ValueError):
    """A database URL libpq cannot read; its message hides the password."""


def check_database_url(url: str) -> str:
    """``url`` if libpq can read it (a ``postgresql://`` URL or key=value settings), else
    :class:`BadDatabaseUrl` saying why, with its password as ``***``."""
    import psycopg  # here: every command reads this module, and most start without a database
    from psycopg.conninfo import conninfo_to_dict

    from aquami.cli_text import URL_MAX_LENGTH, text_problem

    # Empty is libpq's own "the PG* variables, else the local socket". A blank, a line break or a port
    # beyond 65535 libpq read fine: each was found out only by the connection (a traceback, run
    # in-process), and one of 100 000 characters was quoted whole in the error.
    problem = None if url == "" else text_problem(url, URL_MAX_LENGTH)
    if problem is not None:
        raise BadDatabaseUrl(f"the URL {problem} (give postgresql://USER:PASSWORD@HOST:PORT/DATABASE)")
    try:
        ports = conninfo_to_dict(url).get("port")
        if ports is not None and not all(
            p == "" or (p.isdigit() and 0 < int(p) <= 65535) for p in str(ports).split(",")
        ):
            raise psycopg.ProgrammingError(f"the port {ports} is no number from 1 to 65535")
    except psycopg.ProgrammingError as error:
        said = " ".join(hide_password(str(error), url).split())
        raise BadDatabaseUrl(
            f"URL {redacted(url)!r}: {said} (give postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        ) from None
    return url


def _checked(url: str | None, refused: int) -> str | None:
    """The URL checked (None stays None), or one line and exit ``refused``."""
    if url is None:
        return None
    try:
        return check_database_url(url)
    except BadDatabaseUrl as error:
        typer.echo(f"error: database: {error}", err=True)  # as cli.main says what the database refuses
        raise typer.Exit(refused) from None


def checked_option(url: str | None) -> str | None:
    """An option's callback: the URL checked (None stays None), or one line and exit 1."""
    return _checked(url, FAILED)


def _checked_for_a_service(url: str | None) -> str | None:
    """As :func:`checked_option`, exit :data:`~aquami.exit_codes.CONFIG`."""
    return _checked(url, CONFIG)


_HELP = "PostgreSQL/TimescaleDB URL."

#: ``--database-url`` (``AQUAMI_DATABASE_URL``) of every command that uses the database.
DATABASE_URL = typer.Option(..., envvar="AQUAMI_DATABASE_URL", help=_HELP, callback=checked_option)

#: The same, for ``collector run`` and ``server run``: a URL that is none exits
#: :data:`~aquami.exit_codes.CONFIG`, which their service units do not restart on (the same
#: environment file, the same refusal at every start); the one-shot commands exit 1, as before.
SERVICE_DATABASE_URL = typer.Option(..., envvar="AQUAMI_DATABASE_URL", help=_HELP, callback=_checked_for_a_service)
