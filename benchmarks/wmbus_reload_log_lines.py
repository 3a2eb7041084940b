"""Warnings and readings of a wireless M-Bus receiver whose gateway file is reloaded every 10 minutes.

Two hours on the monotonic clock the receiver's memory is given (no waiting): W000001's key is typed
wrong, so none of its telegrams (every 2 minutes) decodes, and W000002's telegrams (every 2 minutes)
are each heard twice, directly and through a repeater 3 s later. An operator's automation reloads
the file every 10 minutes, 1 s after one of W000002's telegrams: its copy comes after the reload. At
2 h the key is corrected by a last reload. Counted: the warnings about W000001's telegrams (said once
an episode, then a reminder every hour), whether the episode's end is said and with how many
telegrams, and W000002's readings taken against its telegrams sent.

    .venv/bin/python -m benchmarks.wmbus_reload_log_lines
"""

from __future__ import annotations

import asyncio
import logging

from aquami.contracts.reads import Reading
from aquami.counted import counted
from benchmarks.log_kinds import LinesSaid
from firmware_protocols.mbus.build import build_user_data
from firmware_protocols.records import DataRecord
from firmware_protocols.wmbus.build import build_telegram
from gateway.config import MeterConfig, WMBusBusConfig
from gateway.wmbus import WMBusListener
from gateway.wmbus_duplicates import DuplicateFilter
from gateway.wmbus_said import ReceiverSayings
from gateway.wmbus_unconfigured import ReceiverMemory

KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
WRONG_KEY = bytes(16)
HOURS, SEND_EVERY_S, RELOAD_EVERY_S, COPY_AFTER_S = 2, 120, 600, 3


def _telegram(ident: str, access_no: int, key: bytes | None) -> bytes:
    records = build_user_data([(DataRecord("volume", "m3", 10.0 + access_no / 1000), "bcd8")])
    return build_telegram(
        records, manufacturer="KAM", id=ident, version=1, medium="water", access_no=access_no % 256, key=key,
        crcs=False,
    )  # fmt: skip


def main() -> None:
    now = [0.0]
    memory = ReceiverMemory(
        said=ReceiverSayings(monotonic=lambda: now[0]), duplicates=DuplicateFilter(0.0, clock=lambda: now[0])
    )
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    def reload(key_of_1: bytes) -> WMBusListener:
        meters = (
            MeterConfig("W000001", 0, "wmbus", {}, None, wmbus_id="77000001", key=key_of_1),
            MeterConfig("W000002", 0, "wmbus", {}, None, wmbus_id="77000002"),
        )
        bus = WMBusBusConfig("radio-1", "/dev/null", meters)
        return WMBusListener(bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None, memory=memory)

    handler = LinesSaid()
    logger = logging.getLogger("gateway.wmbus")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    events: list[tuple[int, str, int]] = []  # (second, what, access number)
    for n, at in enumerate(range(0, HOURS * 3600, SEND_EVERY_S)):
        events += [(at, "W000001", n), (at + 60, "W000002", n), (at + 60 + COPY_AFTER_S, "W000002", n)]
    events += [(at, "reload", 0) for at in range(60 + 1, HOURS * 3600, RELOAD_EVERY_S)]
    events += [(HOURS * 3600 + 1, "key corrected", 0), (HOURS * 3600 + 60, "W000001", 999)]
    listener = reload(WRONG_KEY)
    reloads = 0
    sent_2 = 0
    for second, what, access_no in sorted(events, key=lambda e: (e[0], e[1] != "reload")):
        now[0] = float(second)
        if what in ("reload", "key corrected"):
            listener = reload(KEY if what == "key corrected" else WRONG_KEY)
            reloads += 1
            continue
        if what == "W000002" and (second - 60) % SEND_EVERY_S == 0:
            sent_2 += 1
        asyncio.run(listener.handle(_telegram("7700000" + what[-1], access_no, KEY if what == "W000001" else None)))
    logger.removeHandler(handler)
    about_1 = [(level, line) for level, line in handler.lines if "W000001" in line]
    warnings = [line for level, line in about_1 if level == logging.WARNING]
    firsts = [line for line in warnings if "said again every" in line]
    ended = [line for level, line in about_1 if level == logging.INFO]
    readings_2 = sum(r.meter_id == "W000002" for r in taken)
    print(f"{HOURS} h, file reloaded {reloads} times (every {RELOAD_EVERY_S // 60} min)")
    reminders = len(warnings) - len(firsts)
    print(f"W000001 undecodable telegrams: {counted(len(firsts), 'warning')} + {counted(reminders, 'reminder')}")
    print(f"W000001 key corrected: {ended[0] if ended else 'episode ended unsaid'}")
    print(f"W000002: {sent_2} telegrams sent (each heard twice), {readings_2} readings taken")


if __name__ == "__main__":
    main()
