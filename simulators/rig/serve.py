"""Run a rig until stopped: start its transports and endpoint, say where each listens, show the table."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live

from simulators.rig.config import RigConfig
from simulators.rig.control import ControlServer
from simulators.rig.runner import Rig
from simulators.rig.table import render
from simulators.serial_line import port_framing


def describe(rig: Rig, control_url: str) -> list[str]:
    """What the technician needs to connect: each transport (a serial one with the framing to open
    its pty with) and meter, and the fault endpoint."""
    lines = []
    for transport in rig.config.transports:
        line = f"{transport.name} ({transport.protocol}): {rig.where.get(transport.name, '-')}"
        settings = rig.framing.get(transport.name)
        if settings is not None:
            opened, wire = port_framing(settings), f"{settings.bytesize}{settings.parity}{settings.stopbits}"
            line += f" at {opened}"
            if not opened.endswith(wire):  # a pty here takes no parity (simulators.serial_line)
                line += f" (timed as the wire's {wire}: this system's ptys take no parity)"
        lines.append(line)
    for meter_id, meter in rig.meters.items():
        lines.append(f"  {meter_id:<14} {meter.config.kind:<18} {meter.where}")
    lines.append(f"faults: {control_url}  (aquami simulate fault --rig {control_url} METER FAULT)")
    return lines


async def serve(
    config: RigConfig,
    *,
    table: bool = True,
    console: Console | None = None,
    ready: Callable[[Rig], None] | None = None,
    stop: asyncio.Event | None = None,
    state_path: Path | None = None,
) -> None:
    console = console or Console()
    rig = Rig(config, state_path=state_path)
    await rig.start()
    try:
        control = ControlServer(rig, config.control_host, config.control_port).start()
    except OSError as error:
        await rig.stop()
        # "[Errno 98] Address already in use" alone named neither the setting nor the port
        where = f"{config.control_host}:{config.control_port}"
        raise OSError(error.errno, f"rig.control {where}: {error.strerror} (another rig running?)") from None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    try:
        for line in describe(rig, control.url):
            console.print(line, highlight=False, soft_wrap=True)
        if ready is not None:
            ready(rig)
        if table:
            with Live(render(rig.rows()), console=console, refresh_per_second=2) as live:
                while not stop.is_set():
                    await asyncio.sleep(1.0)
                    live.update(render(await asyncio.to_thread(rig.rows)))
        else:
            await stop.wait()
    finally:
        control.stop()
        await rig.stop()
