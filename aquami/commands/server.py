"""``aquami server``: the HTTP API and web UI, and API keys."""

from __future__ import annotations

import typer

DATABASE_URL = typer.Option(..., envvar="AQUAMI_DATABASE_URL", help="PostgreSQL/TimescaleDB URL.")


def register(app: typer.Typer) -> None:
    server_app = typer.Typer(help="The HTTP API and web UI.", no_args_is_help=True)

    @server_app.command("run")
    def run(
        database_url: str = DATABASE_URL,
        host: str = typer.Option("127.0.0.1", envvar="AQUAMI_HOST"),
        port: int = typer.Option(8000, envvar="AQUAMI_PORT"),
    ) -> None:
        """Serve the API and the web page."""
        import uvicorn

        from server.app import create_app

        uvicorn.run(create_app(database_url), host=host, port=port, proxy_headers=True)

    @server_app.command("create-key")
    def create_key(
        name: str = typer.Option(..., help="Who or what the key is for."),
        role: list[str] = typer.Option(
            ..., "--role", help="Role(s): admin, reader, meterization, billing, customer_care, …"
        ),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Create an API key and print it (it is shown only this once)."""
        import psycopg

        from server.auth import create_api_key

        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                typer.echo(create_api_key(conn, name, role))
        except ValueError as error:
            raise typer.BadParameter(str(error)) from error

    app.add_typer(server_app, name="server")
