"""``aquami demo``: the whole path, live, on embedded defaults."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from aquami.cli_params import A_YEAR_S
from aquami.cli_text import checked_host, checked_mqtt_url
from aquami.database_url import checked_option
from aquami.logging_setup import configure_logging


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        meters: int = typer.Option(20, min=1, max=247, help="Simulated Modbus TCP meters."),
        poll_interval: float = typer.Option(5.0, min=0.2, max=3600.0, help="Seconds between polls of each meter."),
        duration: float = typer.Option(  # inf ran on for ever, -inf stopped at once, nan ran on
            None, min=0.0, max=A_YEAR_S, help="Stop after this many seconds (default: until Ctrl-C)."
        ),
        host: str = typer.Option(
            "127.0.0.1", callback=checked_host("--host"), help="Address the web server listens on."
        ),
        port: int = typer.Option(8000, min=0, max=65535, help="Web server port (a free one if taken; 0: any)."),
        # Never from the environment: AQUAMI_DATABASE_URL and AQUAMI_MQTT_URL name the real system's
        # services, and the demo's invented meters and readings must not land there unasked.
        database_url: str = typer.Option(
            None,
            help="Use this PostgreSQL/TimescaleDB instead of the embedded one: an empty database, or one an "
            "earlier demo filled (any other is refused).",
            callback=_demo_database_url,
        ),
        mqtt_url: str = typer.Option(
            None, callback=checked_mqtt_url("--mqtt-url"), help="Use this MQTT broker instead of the embedded one."
        ),
        data_dir: Path = typer.Option(
            None, help="Keep the demo's database and spool here, made if missing (default: a temporary folder)."
        ),
    ) -> None:
        """Run simulated meters → gateway → broker → collector → database → API and web page."""
        from aquami.demo import DemoOptions, NotTheDemosDatabase, run_demo

        configure_logging(logging.WARNING)
        try:
            run_demo(
                DemoOptions(
                    meters=meters,
                    poll_interval_s=poll_interval,
                    duration_s=duration,
                    host=host,
                    port=port,
                    database_url=database_url,
                    mqtt_url=mqtt_url,
                    data_dir=data_dir,
                )
            )
        except NotTheDemosDatabase as refused:
            raise typer.BadParameter(str(refused), param_hint="--database-url") from None


def _demo_database_url(url: str | None) -> str | None:
    """``--database-url`` checked as every command's, but not empty: the demo took ``""`` for "the
    embedded database", silently; libpq's meaning (the PG* variables) is no demo's."""
    if url == "":
        typer.echo("error: database: the URL is empty (leave --database-url out for the embedded one)", err=True)
        raise typer.Exit(1)
    return checked_option(url)
