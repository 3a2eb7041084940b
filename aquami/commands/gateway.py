"""``aquami gateway``: run a field gateway from its TOML configuration, check the file, or scan a bus."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aquami import atomic_write
from aquami.cli_params import PARAM_OPTION, check_output_folder
from aquami.cli_text import checked_identifier, checked_text
from aquami.exit_codes import CONFIG, FAILED
from aquami.logging_setup import configure_logging

if TYPE_CHECKING:
    from aquami.contracts.reads import Reading
    from gateway.config import GatewayConfig


def _load(config: Path, refused: int = FAILED) -> GatewayConfig:
    """The configuration, or its refusal in one line and exit ``refused``: 1 for ``check`` and
    ``scan``, as they have always said it; ``run`` passes :data:`~aquami.exit_codes.CONFIG`, which its
    service unit does not restart on (the same file is refused at every start)."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(refused) from error


def _some(names: list[str], shown: int = 5) -> str:
    """``FLAT-5, FLAT-7``, or ``FLAT-1, FLAT-2, FLAT-3, FLAT-4, FLAT-5 and 12 more``: meters named in one line."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _config_argument(help: str) -> Any:
    """CONFIG, the gateway's TOML file: one that is not there (or a folder, or unreadable) is a bad
    argument, exit 2 naming it, as every other command's file; before, it was exit 1, ``error: PATH:
    no such file``, as an invalid configuration still is."""
    return typer.Argument(..., exists=True, dir_okay=False, help=help)


def register(app: typer.Typer) -> None:
    gateway_app = typer.Typer(help="The field gateway: poll meters, spool, publish to MQTT.", no_args_is_help=True)

    @gateway_app.command("check")
    def check(
        config: Path = _config_argument("Gateway TOML configuration."),
        strict: bool = typer.Option(
            False, "--strict", help="Exit 1 where `gateway run` would refuse to start on this machine."
        ),
    ) -> None:
        """Validate a configuration without starting; exit 1 naming the line and field at fault.

        A spool folder missing on this machine (it may be checked on another than the one it runs
        on) is a warning, exit 0; with --strict an error, exit 1."""
        from gateway.secret_files import secrets_open_to_every_user
        from gateway.spool import folder_missing

        loaded = _load(config)
        for sentence in secrets_open_to_every_user(config, loaded):
            typer.echo(f"warning: {sentence}", err=True)
        missing = folder_missing(loaded.spool_path)
        if missing is not None:
            said = f"the spool {loaded.spool_path}: {missing}; `aquami gateway run` refuses to start without it"
            typer.echo(f"{'error' if strict else 'warning'}: {said}", err=True)
            if strict:
                raise typer.Exit(1)
        typer.echo(f"{config}: ok ({loaded.size()})")

    @gateway_app.command("run")
    def run(
        config: Path = _config_argument("Gateway TOML configuration."),
        verbose: bool = typer.Option(
            False,
            "--verbose",
            "-v",
            help="Log every Modbus frame sent and received (pymodbus's debug log), and pymodbus's own line for "
            "each request left unanswered; the rest of the log stays at INFO.",
        ),
    ) -> None:
        """Poll and publish until stopped (Ctrl-C); readings wait in the spool while the broker is away."""
        import asyncio
        import logging
        import signal

        from gateway.scan import pymodbus_verbose
        from gateway.secret_files import log_secrets_open_to_every_user
        from gateway.service import Gateway
        from gateway.spool import SpoolUnusable

        configure_logging(logging.INFO)
        if verbose:
            pymodbus_verbose()  # as a scan's --verbose, for as long as the gateway runs
        loaded = _load(config, refused=CONFIG)
        log_secrets_open_to_every_user(config, loaded)

        async def main() -> str | None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def on_signal(sig: signal.Signals) -> None:
                # (run by the loop, so never before ``gateway`` is made: main does not await before)
                gateway.stop_reason = gateway.stop_reason or sig.name  # the first: why, in gateway_stopped
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal, sig)
            gateway = Gateway(loaded, config_path=config)
            await gateway.run(stop)
            return gateway.failure

        try:
            failure = asyncio.run(main())
        except SpoolUnusable as error:  # one line that names the file, as for a bad configuration
            # exit 1, started again: its folder on a card not mounted yet, another gateway holding it
            # are cured without an edit of the configuration, and the readings wait on the card (a
            # damaged file is set aside and salvaged as the spool opens: here only with on_damage = "stop")
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(FAILED) from error
        if failure is not None:  # logged as it happened; exit 1, so a supervisor restarts the gateway
            raise typer.Exit(FAILED)

    @gateway_app.command("scan")
    def scan(
        config: Path = _config_argument("Gateway TOML configuration (for the bus settings)."),
        bus: str = typer.Option(..., callback=checked_identifier("--bus"), help="The bus to scan, by name."),
        first: int = typer.Option(1, min=1, max=247, help="First Modbus unit id to try."),
        last: int = typer.Option(247, min=1, max=247, help="Last Modbus unit id to try."),
        profile: str = typer.Option(
            "smart_water_meter", callback=checked_text("--profile"), help="The profile to read with."
        ),
        param: list[str] = PARAM_OPTION,
        output: Path | None = typer.Option(
            None, help="Write the meters snippet (\\[\\[meters]] tables) here (default: stdout)."
        ),
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="Log every Modbus frame sent and received (pymodbus's debug log)."
        ),
        timeout: float | None = typer.Option(
            None,
            min=0.01,
            max=60,
            help="Seconds to wait for each answer (default: the bus's timeout_s; M-Bus: its answer_timeout_s).",
        ),
    ) -> None:
        """Find the meters on one bus and write a config snippet (a serial bus a gateway polls is refused).

        Modbus: tries unit ids FIRST..LAST, each meter's serial_number in its table (a profile that
        reads one). M-Bus: a secondary-address (wildcard) search. A unit that answered but gave no
        reading is one line on stderr, as is one whose serial number is a meter's configured at
        another unit id, or one no meter has where a meter is configured with another (exchanged?);
        one that does not answer is said only where a meter is configured (--verbose shows the
        frames). M-Bus likewise, by identification, a meter placed at its answer's primary address.

        Exit 0 scanned (even 0 found), 1 not scannable (bus unusable or in use), 2 bad options."""
        import asyncio
        import logging
        from dataclasses import replace

        from aquami.cli_params import profile_parameters
        from firmware_protocols.modbus import load_profile
        from firmware_protocols.modbus.profile import ProfileError
        from gateway.buses import attempt_once, make_transport
        from gateway.config import MBusBusConfig, MeterConfig, WMBusBusConfig
        from gateway.mbus import MBusTransport
        from gateway.meter_identity import IDENTIFICATION, SERIAL_NUMBER
        from gateway.profiles import ProfileBook
        from gateway.scan import (
            MBUS_WORDS,
            MODBUS_WORDS,
            LateUnits,
            mbus_owner_lines,
            mbus_snippet,
            owner_lines,
            pymodbus_quiet,
            scan_modbus,
            serial_numbers_heard,
            serial_owners,
            snippet,
            unpinned,
        )
        from gateway.scan_configured import lines, mbus_configured_answers, modbus_configured
        from gateway.spool_reader import remembered_in_spool
        from gateway.transport import PollError

        parameters = profile_parameters(param)
        try:
            load_profile(profile, parameters)  # said now, not as each unit's failed read
        except ProfileError as error:
            raise typer.BadParameter(str(error), param_hint="--profile/--param") from None
        if first > last:
            raise typer.BadParameter(f"--first {first} is after --last {last}", param_hint="--first/--last")
        check_output_folder(output, "--output")  # now, not after a scan of minutes its snippet would not outlive
        loaded = _load(config)
        chosen = next((b for b in loaded.buses if b.name == bus), None)
        if chosen is None:
            typer.echo(f"error: no bus {bus!r} in {config}", err=True)
            raise typer.Exit(1)
        if isinstance(chosen, WMBusBusConfig):
            typer.echo(f"error: bus {bus!r} is a wM-Bus receiver: its meters send, nothing is scanned", err=True)
            raise typer.Exit(1)

        if isinstance(chosen, MBusBusConfig):  # M-Bus: the answer window; its timeout_s follows (0: from it)
            chosen = chosen if timeout is None else replace(chosen, answer_timeout_s=timeout, timeout_s=0.0)
        elif timeout is not None:
            chosen = replace(chosen, timeout_s=timeout)
        window = chosen.answer_timeout_s if isinstance(chosen, MBusBusConfig) else chosen.timeout_s
        late = LateUnits(
            lambda line: typer.echo(line, err=True),
            window,
            "answer_timeout_s" if isinstance(chosen, MBusBusConfig) else "timeout_s",
        )

        # the meters not pinned known by their first answer's, as the gateway's spool remembers it (read-only)
        words = MBUS_WORDS if isinstance(chosen, MBusBusConfig) else MODBUS_WORDS
        kind = IDENTIFICATION if isinstance(chosen, MBusBusConfig) else SERIAL_NUMBER  # (what its answers carry)
        remembered = remembered_in_spool(loaded.spool_path, unpinned(chosen.meters))
        if remembered.unread:
            typer.echo(
                f"# the spool {loaded.spool_path} could not be read ({remembered.why}): "
                f"{_some(remembered.unread)} (configured without a{'n' if words is MBUS_WORDS else ''} "
                f"{words.identity}): known by none in this scan",
                err=True,
            )

        async def main() -> str:
            assert chosen is not None
            transport = make_transport(chosen, ProfileBook(), on_late=late)
            late.quieten(transport)

            async def attempt(meter: MeterConfig) -> Reading:
                return await attempt_once(transport, chosen, meter)

            try:
                if isinstance(transport, MBusTransport):
                    found_mbus = await transport.search()
                    for selections, answered in zip(
                        transport.late_in_search, transport.late_in_search_answered, strict=True
                    ):
                        late.in_search(selections, answered)
                    found_ids = {f.identification for f in found_mbus}
                    for identification in transport.late_reads_in_search:
                        if identification not in found_ids:
                            late.read_in_search(identification)
                    owners = serial_owners(chosen.meters, kind, remembered.identities)
                    said_mbus, found_mbus = mbus_configured_answers(
                        chosen.name, chosen.meters, owners, found_mbus, transport.late_reads_in_search
                    )
                    for line in mbus_owner_lines(found_mbus, owners) + lines(chosen.name, said_mbus, MBUS_WORDS):
                        typer.echo(line, err=True)
                    typer.echo(f"# {len(found_mbus)} meters found on {chosen.name} (secondary search)", err=True)
                    return mbus_snippet(chosen.name, found_mbus)
                problems: list[int] = []

                def on_problem(unit_id: int, error: PollError) -> None:
                    problems.append(unit_id)
                    typer.echo(f"# unit {unit_id} answered: {error}", err=True)

                owners = serial_owners(chosen.meters, kind, remembered.identities)
                found = await scan_modbus(
                    attempt,
                    chosen.name,
                    range(first, last + 1),
                    profile,
                    parameters,
                    on_problem=on_problem,
                    linger_s=window,  # the last unit's late answer: heard as the others' are
                    heard=serial_numbers_heard(transport),
                    owners=owners,
                )
            finally:
                await transport.close()
            scanned = range(first, last + 1)
            said, found = modbus_configured(chosen.name, chosen.meters, owners, found, scanned, problems, late.units)
            for line in owner_lines(found) + lines(chosen.name, said):
                typer.echo(line, err=True)
            typer.echo(f"# {len(found)} meters found on {chosen.name} (units {first}..{last})", err=True)
            return snippet(chosen.name, found)

        if verbose:
            configure_logging(logging.WARNING)  # pymodbus's frames (pymodbus_quiet) with a time each
        try:
            with pymodbus_quiet(verbose):
                text = asyncio.run(main())
        except PollError as error:  # the bus will not open (not "0 meters found"), or a search stopped
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        if output is None:
            typer.echo(text)
        else:
            atomic_write.write_text(output, text)

    app.add_typer(gateway_app, name="gateway")
