"""Polls of wired M-Bus meters right after a secondary-address search: how many got a stale telegram.

On the project's M-Bus simulator (a pty at 9600 baud 8E1; its meters honour FCB as EN 13757-2 has
it: a REQ_UD2 with FCV set and the FCB of the last one they answered is a repeat, answered with their
last telegram), four meters, two read by primary address and two by secondary address, one of each
answering in two telegrams (current values, then monthly history) and one in one. Each round polls
every meter, searches the line an hour later (``aquami gateway scan``'s search, which reads each
meter it finds with FCB = 1), then polls every meter again an hour after that, counted:

- stale: a poll answered with a telegram the meter had sent before (its access number, counted on
  by each fresh telegram, moved on by fewer than the telegrams of its read): a reading whose volume
  is the register's at the search, stamped with the poll's time;
- failed: a poll that gave no reading (a meter left in the middle of its telegram sequence by the
  search answers the poll's first request with its history, no current volume);
- the link-layer requests those polls sent (SND_NKE is the cost of a fix that resets the meters);
- the search's own reads answered with a telegram sent before (the meter's access number did not
  move in the search): a meter whose last request carried FCB = 1 takes the search's FCB = 1 as a
  repeat, and the scan says its volume at that request (no reading is stored from a search); and the
  searches' requests (a read again with FCB = 0 is the cost of the fix).

No baseline runs beside it: run it on the code before a change for the figure to compare with.

    .venv/bin/python -m benchmarks.mbus_polls_after_search [--rounds 4]
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import decode_master_frame
from gateway.config import MBusBusConfig, MeterConfig
from gateway.mbus import MBusTransport
from gateway.transport import PollError
from simulators.mbus_bus import MBusBus
from simulators.mbus_slave import MBusWaterMeter
from simulators.meter_model import MeterModel
from simulators.serial_line import LineSettings, Reply, SerialLine, pty_accepts_parity

BAUDRATE = 9600
ANSWER_WINDOW_S = 0.3  # wide for a loaded machine: the simulated meters answer from a thread
START = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)


@dataclass
class Counting:
    """The simulated bus, counting the requests it is sent by function while :attr:`on` is set."""

    bus: MBusBus
    on: bool = False
    requests: Counter[str] = field(default_factory=Counter)

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        if self.on:
            try:
                self.requests[str(decode_master_frame(frame).get("function"))] += 1
            except DecodeError:
                self.requests["undecodable"] += 1
        return self.bus.handle(frame, now)


@dataclass
class Outcome:
    polls: int = 0
    stale: int = 0
    failed: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    search_reads: int = 0  # the meters the searches found (read)
    search_stale: int = 0  # of them, those whose meter sent no fresh telegram in the search
    search_requests: Counter[str] = field(default_factory=Counter)


def run(rounds: int) -> Outcome:
    installed = START - timedelta(days=200)
    waters = [
        MBusWaterMeter(MeterModel(f"H{n}", installed=installed, seed=n), primary, f"2600000{n}", history_months=months)
        for n, primary, months in [(1, 1, 12), (2, 2, 0), (3, 0, 12), (4, 0, 0)]
    ]
    meters = [
        MeterConfig(f"H{w.identification[-1]}", w.primary_address, "mbus")
        if w.primary_address
        else MeterConfig(f"H{w.identification[-1]}", 0, "mbus", secondary_address=w.identification)
        for w in waters
    ]
    now = [START]
    outcome = Outcome()
    settings = LineSettings(BAUDRATE, parity="E")
    counting = Counting(MBusBus(waters, settings=settings), requests=outcome.requests)
    line = SerialLine(counting, settings, None, lambda: now[0]).start()
    parity: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
    config = MBusBusConfig(
        "m", line.port, tuple(meters), baudrate=BAUDRATE, parity=parity, answer_timeout_s=ANSWER_WINDOW_S
    )
    transport = MBusTransport(config, clock=lambda: now[0])
    try:
        for _ in range(rounds):
            for meter in meters:
                transport.read_blocking(meter)
            now[0] += timedelta(hours=1)
            searched_before = [water.access_no for water in waters]
            counting.requests, counting.on = outcome.search_requests, True
            outcome.search_reads += len(transport.search_blocking("2600000"))
            counting.requests, counting.on = outcome.requests, False
            outcome.search_stale += sum(w.access_no == n for w, n in zip(waters, searched_before, strict=True))
            now[0] += timedelta(hours=1)
            counting.on = True
            for meter, water in zip(meters, waters, strict=True):
                before, telegrams = water.access_no, len(water.telegrams(now[0]))
                outcome.polls += 1
                try:
                    transport.read_blocking(meter)
                except PollError:
                    outcome.failed += 1
                    continue
                outcome.stale += water.access_no - before < telegrams
            counting.on = False
            now[0] += timedelta(hours=1)
    finally:
        transport.line.close()
        line.stop()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    outcome = run(args.rounds)
    print(f"polls after a search: {outcome.polls}")
    print(f"  answered with a stale telegram: {outcome.stale}")
    print(f"  failed: {outcome.failed}")
    print("  requests they sent: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.requests.items())))
    print(f"the searches' reads: {outcome.search_reads}, answered with a stale telegram: {outcome.search_stale}")
    print("  the searches' requests: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.search_requests.items())))


if __name__ == "__main__":
    main()
