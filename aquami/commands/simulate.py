"""``aquami simulate``: meters in software, on the same wires as real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aquami.cli_text import checked_host, checked_http_url, checked_identifier, checked_mqtt_url, checked_text


def register(app: typer.Typer) -> None:
    simulate_app = typer.Typer(help="Simulated meters for tests and technicians' rigs.", no_args_is_help=True)

    @simulate_app.command("modbus-tcp")
    def modbus_tcp(
        meters: int = typer.Option(10, min=1, max=247, help="Meters, at unit ids 1..N."),
        host: str = typer.Option("127.0.0.1", callback=checked_host("--host")),
        port: int = typer.Option(5020, min=0, max=65535),
        seed: int = typer.Option(7, min=0, help="The same seed gives the same water (0 or more)."),
        installed: str = typer.Option(
            "2026-01-01T00:00:00Z",
            help="When the meters were installed (ISO 8601 UTC). Fixed, so a restarted simulator's registers "
            "go on from where they were; the demo fleet's leak, tamper and reverse flow begin 51 days later.",
        ),
    ) -> None:
        """Serve smart water meters over Modbus TCP until stopped (Ctrl-C)."""
        import asyncio
        import signal
        from datetime import UTC, datetime

        from aquami.demo import INSTALLED_BEFORE_EPOCH, demo_fleet
        from simulators.ground_truth import iso_utc, parse_iso_utc
        from simulators.meter_model import EARLIEST_INSTALLED
        from simulators.modbus_tcp import ModbusTcpSimulator

        try:
            since = parse_iso_utc(installed)  # in a stored time's shape and words (aquami.stored_times)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--installed") from None
        now = datetime.now(UTC)
        if since > now:
            raise typer.BadParameter(
                f"{installed}: in the future; meters must be installed to be read", param_hint="--installed"
            )
        if since < EARLIEST_INSTALLED:
            raise typer.BadParameter(
                f"{installed}: before {iso_utc(EARLIEST_INSTALLED)}, the earliest the simulated meters start from",
                param_hint="--installed",
            )
        fleet = demo_fleet(meters, seed, since + INSTALLED_BEFORE_EPOCH)
        for unit in fleet:
            unit.meter.read(now)  # work out the days since installation before the first request

        async def main() -> None:
            simulator = ModbusTcpSimulator(fleet, host=host, port=port)
            await simulator.start()
            typer.echo(f"{meters} meters (unit ids 1..{meters}, profile smart_water_meter) on {host}:{simulator.port}")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await simulator.stop()

        asyncio.run(main())

    @simulate_app.command("rig")
    def rig(
        config: Path = typer.Option(  # a missing file was "error: PATH: cannot read", naming no option
            ..., "--config", "-c", exists=True, dir_okay=False, help="Rig file, e.g. simulators/examples/rig.toml."
        ),
        table: bool = typer.Option(True, "--table/--no-table", help="Show the live table."),
        check: bool = typer.Option(False, "--check", help="Only validate the file (and its state file, if any)."),
        state: Path | None = typer.Option(
            None,
            "--state",
            help="Where the rig keeps its faults across restarts (default: beside the rig file, rig.state.json).",
        ),
        gateway_config: Path | None = typer.Option(
            None,
            "--gateway-config",
            dir_okay=False,
            help="Write a gateway configuration reading every meter where the rig listens now (its ptys change "
            "at each start), for `aquami gateway run PATH`; rewritten at each start, never over a file the rig "
            "did not write.",
        ),
        gateway_mqtt: str = typer.Option(
            "mqtt://127.0.0.1:1883",
            "--gateway-mqtt",
            callback=checked_mqtt_url("--gateway-mqtt"),
            help="The broker the --gateway-config gateway publishes to.",
        ),
    ) -> None:
        """Run a technician's test rig: every configured meter on its wire, a live table, faults on demand."""
        import asyncio

        from aquami.cli_params import check_output_folder
        from simulators.rig.config import ConfigError, load_rig
        from simulators.rig.gateway_config import NotTheRigsFile, check_writable, write_gateway_config
        from simulators.rig.runner import Rig
        from simulators.rig.serve import serve
        from simulators.rig.state import RigStateError, load_state, state_path_for

        if gateway_config is not None:  # said before the rig starts, not once its ptys are open
            check_output_folder(gateway_config, "--gateway-config")
            try:
                check_writable(gateway_config)
            except NotTheRigsFile as error:
                raise typer.BadParameter(str(error), param_hint="--gateway-config") from None
        state_path = state or state_path_for(config)
        try:
            loaded = load_rig(config)
            if check:
                kinds = {m.meter_id: m.kind for m in loaded.meters}
                load_state(state_path, loaded.seed, loaded.installed, kinds, loaded.step_s)
        except (ConfigError, RigStateError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        if check:
            typer.echo(f"{config}: {len(loaded.meters)} meters on {len(loaded.transports)} transports: OK")
            return

        def ready(rig: Rig) -> None:
            if gateway_config is not None:
                write_gateway_config(rig, gateway_config, gateway_mqtt)
                typer.echo(f"gateway config: {gateway_config}  (aquami gateway run {gateway_config})")

        try:
            asyncio.run(serve(loaded, table=table, state_path=state_path, ready=ready))
        except RigStateError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        except OSError as error:  # a port in use
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None

    @simulate_app.command("fault")
    def fault(
        meter: str = typer.Argument(..., callback=checked_identifier("METER"), help="Meter id, as in the rig file."),
        kind: str = typer.Argument(
            "",
            callback=checked_text("KIND", empty_ok=True),
            help="no_reply, bad_checksum, truncated, garbled, slow, absent, leak, burst, reverse_flow, tamper, "
            "stuck, dry, low_battery, meter_error, main_burst, swap_address (--set with_meter=ID), exchange "
            "(empty with --clear).",
        ),
        rig_url: str = typer.Option(
            "http://127.0.0.1:8470", "--rig", callback=checked_http_url("--rig"), help="The rig's fault endpoint."
        ),
        option: list[str] = typer.Option(
            [], "--set", "-s", callback=checked_text("--set"), help="Fault option NAME=VALUE (delay_s=2, rate_lph=40)."
        ),
        clear: bool = typer.Option(False, "--clear", help="Clear the meter's faults (or fault id KIND) instead."),
    ) -> None:
        """Inject a fault into a running rig (or clear faults): prints the endpoint's JSON answer."""
        import json

        from simulators.rig.client import RigClientError, clear_faults, inject_fault, parse_options

        if clear and kind and not (kind.isascii() and kind.isdigit()):
            typer.echo(f"error: with --clear, give a fault id (a number) or nothing, not {kind!r}", err=True)
            raise typer.Exit(2)
        try:
            if clear:
                answer = clear_faults(rig_url, meter, int(kind) if kind else None)
            else:
                try:
                    options = parse_options(option)
                except RigClientError as error:  # not NAME=VALUE, or nan: the option's mistake, said as one
                    raise typer.BadParameter(str(error), param_hint="--set") from None
                _check_fault(kind, options)  # before the rig is called: a typo is said even with no rig running
                answer = inject_fault(rig_url, meter, kind, options)
        except RigClientError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(answer, indent=2))

    app.add_typer(simulate_app, name="simulate")


def _check_fault(kind: str, options: dict[str, Any]) -> None:
    """Refuse a fault no meter of a rig takes, or options no fault takes, as the rig would (what
    depends on the meter's kind, a main burst on a customer meter, is the rig's to say)."""
    from simulators.rig.faults import FAULT_KINDS, INLET_KINDS, parse_fault

    if kind not in FAULT_KINDS:
        raise typer.BadParameter(f"{kind!r} is no fault: {', '.join(FAULT_KINDS)}", param_hint="KIND")
    if "kind" in options:  # it took KIND's place: `leak --set kind=burst` injected a burst
        raise typer.BadParameter("kind: the fault is the KIND argument, not an option", param_hint="--set")
    try:  # the request as the rig's endpoint builds it, for a meter that takes this kind
        # an exchange's new identification is an M-Bus meter's (a Modbus meter's: its serial_number)
        mbus = kind == "exchange" and "identification" in options
        parse_fault(
            {"kind": kind, **options},
            "dma_inlet" if kind in INLET_KINDS else "mbus_water" if mbus else "smart_water_meter",
        )
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--set") from None
