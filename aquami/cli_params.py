"""Options several commands share: ``--param KEY=VALUE`` (the parameters a Modbus profile's scale
names, ``${litres_per_pulse}``), the bound of an option in seconds, the parse of one in ISO 8601
and the check of an ``--out`` file's folder."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from aquami.cli_text import checked_text
from aquami.excerpt import quoted

#: ``--param`` of the commands that load a Modbus profile (``gateway scan``, ``decode modbus``).
PARAM_OPTION = typer.Option(
    [],
    "--param",
    callback=checked_text("--param"),
    help="KEY=VALUE the profile needs, e.g. litres_per_pulse=10 for pulse_counter.",
)


#: The longest interval, wait or warning an option in seconds takes: a year and a day. Without a
#: maximum, ``inf`` and ``1e309`` passed typer's ``min`` and overflowed ``timedelta`` into a traceback,
#: or ran on for ever (a demo ``--duration inf``, a ``--vee-every inf`` that is no "never").
A_YEAR_S = 366 * 24 * 3600


def floor_lag_warning_option(held_back: str) -> Any:
    """``--floor-lag-warning`` of ``collector run`` and ``server run`` (collector.floor_lag), its help
    naming what the open-transactions floor holds back in that process (``held_back``)."""
    return typer.Option(
        3600,
        min=1,
        max=A_YEAR_S,
        envvar="AQUAMI_FLOOR_LAG_WARNING",
        help="Warn, once per session, when a transaction open longer than so many seconds (a psql left "
        f"idle in a transaction) holds back {held_back}, naming it.",
    )


def profile_parameters(items: list[str]) -> dict[str, float | str]:
    """Each ``KEY=VALUE`` as the gateway's configuration would give it: a number where it is one."""
    parameters: dict[str, float | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: give KEY=VALUE, e.g. litres_per_pulse=10", param_hint="--param")
        try:
            number = float(value)
        except ValueError:
            parameters[key.strip()] = value.strip()
            continue
        if not math.isfinite(number):  # "inf", "nan", or 1e999 (which float() makes inf)
            raise typer.BadParameter(f"{item!r}: {value.strip()} is not a finite number", param_hint="--param")
        parameters[key.strip()] = number
    return parameters


#: A date alone (``2026-01-01``): its midnight, in UTC.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_datetime(text: str) -> datetime:
    """An instant option's value, in UTC: ISO 8601 (``2026-01-01``, ``2026-01-01T06:00:00Z``; without
    an offset, UTC), within the years a database session shows (aquami.stored_times). Typer's own
    parse (pydantic's) took a number as seconds since 1970: ``--from 12.5`` was 1970-01-01T00:00:12.5Z,
    and ``--to 2026-01-02`` with it asked for 56 years; ``0001-01-01T00:00:00+01:00`` (the year 0 in
    UTC) was an OverflowError traceback. Read as a stored time is (stored_times.aware_utc: its shape,
    ISO 8601, the offset), but a date alone or a time without an offset is taken, in UTC, and any
    fault said in this option's one line."""
    from aquami.stored_times import EARLIEST, PAST_LATEST, aware_utc

    outside = typer.BadParameter(f"{quoted(text)} is outside the years 1900 to 9998 in UTC")
    try:
        moment = aware_utc(f"{text}T00:00:00" if _DATE.fullmatch(text) else text, naive_utc=True)
    except OverflowError:
        raise outside from None
    except ValueError:
        raise typer.BadParameter(f"{quoted(text)} is no ISO 8601 date or time, e.g. 2026-01-01T00:00:00Z") from None
    if not EARLIEST <= moment < PAST_LATEST:
        raise outside
    return moment


def check_output_folder(out: Path | None, option: str = "--out") -> None:
    """Refuse an output file whose folder is not there, before any work (a database connected to, an
    export read) that the write at the end would throw away."""
    if out is not None and not out.resolve().parent.is_dir():
        raise typer.BadParameter(f"{out}: there is no folder {out.parent}", param_hint=option)


def check_database_text(value: str | None, option: str) -> None:
    """Refuse, before connecting, text no PostgreSQL column can hold: a NUL character, or bytes that
    are not UTF-8 (a shell passes those on as they are). Sent, each was the database's error or a
    traceback. The value is not echoed: a ``revoke-key`` argument may be a whole key, secret and all."""
    if value is None:
        return
    if "\x00" in value:
        raise typer.BadParameter("contains a NUL character, which the database stores in no text", param_hint=option)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise typer.BadParameter("is not UTF-8 text (a terminal in another encoding?)", param_hint=option) from None
