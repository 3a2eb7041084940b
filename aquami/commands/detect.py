"""``aquami detect``: run the leak, burst, reverse-flow, stuck-meter and DMA-burst detectors on files.

    aquami detect --readings READINGS.csv --meters METERS.csv --out ALERTS.json

READINGS.csv: ``meter_id,ts,volume_m3`` (ts ISO 8601 UTC, volume the cumulative register; any row
order; missing reads allowed: no row, or a row whose volume is empty, counted and said once),
optionally ``reverse_volume_m3`` and ``quality`` (rows ``estimated`` are left out, as the
collector's job leaves VEE's estimates out). METERS.csv: ``meter_id,dma,role``
(role ``customer`` or ``inlet``), optionally ``bulk``, ``installed_at`` and ``removed_at`` (a meter
exchanged for another: its silence after removal is no missing read to estimate).
ALERTS.json: a JSON array of alerts (``meter_id``, ``dma``, ``kind``, ``start``, ``detected_at``,
``rate_l_h``, ``volume_l``, ``confidence``, ``evidence``, …), the same detectors the collector runs.
BALANCE.json (``--balance``): per DMA, its customers and the m³ in, recorded, lost and estimated;
null where they cannot be known (a DMA without an inlet meter in place while the readings were
taken, whose main-burst detection is off too; a DMA with a meter in place but without a single
reading, named in ``unread_meters``): a warning says so.
Progress goes to standard error.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # NumPy is imported by the command alone: `aquami --help` stays quick
    import numpy as np

    from collector.detection.files.meters import Meters


class _Progress:
    """One line per stage and every tenth of the way, to stderr, so large inputs show life."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if self.last.get(stage) == tenth:
            return
        self.last[stage] = tenth
        self.say(f"{stage}: {done:,}/{total:,}")

    def say(self, message: str) -> None:
        sys.stderr.write(f"[{time.perf_counter() - self.t0:7.1f} s] {message}\n")
        sys.stderr.flush()


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(
        readings: Path = typer.Option(..., "--readings", exists=True, dir_okay=False, help="READINGS.csv"),
        meters: Path = typer.Option(..., "--meters", exists=True, dir_okay=False, help="METERS.csv"),
        out: Path = typer.Option(..., "--out", dir_okay=False, help="ALERTS.json to write"),
        stuck_days: float = typer.Option(  # at most a year: inf and 1e308 overflowed into a traceback
            7.0, "--stuck-days", min=1.0, max=366.0, help="Days without advance: stuck."
        ),
        balance: Path | None = typer.Option(
            None, "--balance", dir_okay=False, help="Also write each DMA's water balance (JSON)."
        ),
        timezone: str = typer.Option(
            "UTC",
            "--timezone",
            help="The utility's time zone (IANA name, e.g. Australia/Sydney): households' days and weeks are local.",
        ),
    ) -> None:
        """Detect leaks, bursts, reverse flow, stuck meters and DMA main bursts in meter readings."""
        import dataclasses
        import json
        from datetime import timedelta
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from aquami import atomic_write
        from collector.detection.config import DetectionConfig
        from collector.detection.engine import run_detection
        from collector.detection.files.alerts_json import write_alerts_json
        from collector.detection.files.errors import CsvFormatError
        from collector.detection.files.grid import build_block, unread_meters
        from collector.detection.files.meters import read_meters_csv
        from collector.detection.files.readings import read_readings_csv
        from collector.detection.lifecycle import as_raised
        from collector.utility_zone import day_offset_s

        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file's
            raise typer.BadParameter(f"{timezone[:80]!r} is no IANA time zone", param_hint="--timezone") from None
        for option, path in (("--out", out), ("--balance", balance)):
            if path is not None and not path.resolve().parent.is_dir():  # said now, not after the whole run
                raise typer.BadParameter(f"{path}: there is no folder {path.parent}", param_hint=option)
            # an output over an input, or over the other output, replaced it without a word
            for other_option, other in (("--readings", readings), ("--meters", meters), ("--out", out)):
                if path is not None and other_option != option and path.resolve() == other.resolve():
                    raise typer.BadParameter(f"{path} is also {other_option}: write to another file", param_hint=option)

        progress = _Progress()
        try:
            meter_table = read_meters_csv(meters)
            progress.say(f"{meters}: {meter_table.meter_ids.size:,} meters")
            parsed = read_readings_csv(readings, lambda done, total: progress("readings parsed (bytes)", done, total))
            if parsed.ts_s.size == 0:  # said as `no readings` alone, naming neither file nor why
                raise CsvFormatError(
                    f"{readings}: no readings to detect on: it has no row below its header, "
                    "or every row is estimated (quality estimated: VEE's estimates are left out) "
                    "or has no reading (volume_m3 empty)"
                )
            block, dropped = build_block(parsed, meter_table)
            unread = unread_meters(parsed, meter_table, block)
        except CsvFormatError as error:
            raise typer.BadParameter(str(error)) from error
        if dropped == parsed.ts_s.size:  # an empty ALERTS.json would read as "no problems found"
            raise typer.BadParameter(
                f"none of the {dropped:,} readings in {readings} is of a meter in {meters}: nothing to detect on "
                f"(its meters: {_some(parsed.meter_names.tolist())}; "
                f"{meters}'s: {_some(meter_table.meter_ids.tolist())})"
            )
        block = dataclasses.replace(block, day_offset_s=day_offset_s(zone, timedelta(seconds=block.interval_s)))
        if dropped:
            progress.say(f"warning: {dropped:,} readings of meters not in {meters} ignored")
        without_inlet = _dmas_without_inlet(meter_table, block.timestamps)
        if without_inlet:
            progress.say(
                f"warning: {_count(len(without_inlet), 'DMA')} {'has' if len(without_inlet) == 1 else 'have'} no "
                f"inlet meter in {meters} in place while the readings were taken ({_some(without_inlet, 10)}): "
                "main-burst (dma_burst) detection is off there, and the water balance's figures are null"
            )
        progress.say(
            f"{block.n_meters:,} meters read × {block.n_intervals:,} intervals of {block.interval_s} s "
            f"from {block.time(0).isoformat()}"
        )
        config = dataclasses.replace(DetectionConfig(), stuck_days=stuck_days)
        result = run_detection(block, config, progress, unread)
        by_dma = {dma: ids for dma, ids in zip(result.balance.dmas.tolist(), result.balance.unread, strict=True) if ids}
        if by_dma:
            names = sorted(meter for ids in by_dma.values() for meter in ids)
            progress.say(
                f"warning: {_count(len(names), 'meter')} in {meters} {'has' if len(names) == 1 else 'have'} no "
                f"reading at all ({_some(names, 10)}), whose use cannot be estimated: the water balance of "
                f"{_count(len(by_dma), 'DMA')} ({_some(sorted(by_dma), 10)}) is incomplete, its figures null "
                "(the balance's unread_meters name them)"
            )
        # resolved once their flow stopped, as the collector stores them: all were written `open`
        write_alerts_json([as_raised(alert) for alert in result.alerts], out)
        if balance is not None:
            atomic_write.write_text(balance, json.dumps(result.balance.summary(), indent=1) + "\n")
        counts: dict[str, int] = {}
        for alert in result.alerts:
            counts[alert.kind.value] = counts.get(alert.kind.value, 0) + 1
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"
        if parsed.no_reading:  # a head-end export's row for a read it did not get: a missing read
            n = parsed.no_reading
            progress.say(
                f"{n:,} {'row' if n == 1 else 'rows'} of {readings} had no reading (volume_m3 empty): "
                "taken as missing reads"
            )
        progress.say(f"{len(result.alerts)} alerts ({summary}) → {out}")


def _some(names: list[str], shown: int = 3) -> str:
    """The first ``shown`` names, and how many more: enough to see two files name meters differently."""
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _dmas_without_inlet(meters: Meters, timestamps: np.ndarray) -> list[str]:
    """The DMAs of METERS.csv with no meter of role ``inlet`` in its place over any of the grid's
    intervals, sorted: their inflow is unknown, their balance's figures null. By the roles alone, a
    DMA whose only inlet was removed before the readings (or fitted after them) went unnamed."""
    from collector.detection.series import INLET, in_place_over_the_grid

    in_place = in_place_over_the_grid(meters.installations, meters.meter_ids.size, timestamps)
    return sorted(set(meters.dma.tolist()) - set(meters.dma[(meters.role == INLET) & in_place].tolist()))
