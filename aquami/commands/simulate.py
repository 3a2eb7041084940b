"""``aquami simulate``: meters in software, on the same wires as real ones."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    simulate_app = typer.Typer(help="Simulated meters for tests and technicians' rigs.", no_args_is_help=True)

    @simulate_app.command("modbus-tcp")
    def modbus_tcp(
        meters: int = typer.Option(10, min=1, max=247, help="Meters, at unit ids 1..N."),
        host: str = typer.Option("127.0.0.1"),
        port: int = typer.Option(5020),
        seed: int = typer.Option(7),
    ) -> None:
        """Serve smart water meters over Modbus TCP until stopped (Ctrl-C)."""
        import asyncio
        import signal

        from aquami.demo import demo_meters
        from simulators.modbus_tcp import ModbusTcpSimulator

        async def main() -> None:
            simulator = ModbusTcpSimulator(demo_meters(meters, seed), host=host, port=port)
            await simulator.start()
            typer.echo(f"{meters} meters (unit ids 1..{meters}, profile smart_water_meter) on {host}:{simulator.port}")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await simulator.stop()

        asyncio.run(main())

    app.add_typer(simulate_app, name="simulate")
