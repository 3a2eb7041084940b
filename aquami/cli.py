"""The ``aquami`` command: one entry point with a sub-command per part.

Every module in :mod:`aquami.commands` registers its own commands through ``register(app)``, so a
part adds its commands by adding a module, without touching this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import aquami.commands

app = typer.Typer(
    name="aquami",
    help="Advanced metering infrastructure for water utilities: meters → gateway → MQTT → collector → API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(aquami.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"aquami.commands.{module_info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    """The command; what the machine or the database refuses (a port in use, a folder that is not
    there, a database that cannot be reached or a URL that is none, one whose migrations do not match
    this code's) is one line, not a traceback."""
    try:
        app()
    except OSError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(1) from None
    except Exception as error:
        from collector.migrate import SchemaMismatch

        if isinstance(error, SchemaMismatch):  # a migration edited since, or the database newer than the code
            typer.echo(f"error: database: {error}", err=True)
            raise SystemExit(1) from None
        if not type(error).__module__.startswith("psycopg"):
            raise
        import psycopg
        from psycopg.errors import UndefinedFunction, UndefinedTable

        from collector.migrate import NOT_MIGRATED
        from collector.schedule import said as one_line_of

        # the server's message without its CONTEXT line (a PL/pgSQL function's: the floor's refusal
        # was two lines, its grant ending the first), or the client's with its lines joined
        said = one_line_of(error) if isinstance(error, psycopg.Error) else str(error).strip()
        said = said or type(error).__name__
        if isinstance(error, UndefinedTable | UndefinedFunction):  # what the migrations make is not there
            said = f"{NOT_MIGRATED} ({error.diag.message_primary or said})"
        typer.echo(f"error: database: {said}", err=True)
        raise SystemExit(1) from None
