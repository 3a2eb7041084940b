"""A wireless M-Bus meter's first telegram in a run reads what was last accepted from it off the
gateway's event loop (gateway.wmbus: in a thread, as its write after a reading taken already was).

Before, the replay guard read the meter's last accepted message counter and clock from the spool
on the event loop: SQLite blocks it, and with it the gateway's MQTT keepalives and every bus's polls.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aquami.contracts.reads import Reading
from gateway.config import MeterConfig, WMBusBusConfig
from gateway.spool import Spool
from gateway.wmbus import WMBusListener
from tests.gateway.test_wmbus import KEY, _clocked


class _FreshnessOnThreads:
    """The gateway's spool, as the replay guard's store, each read and write recording its thread."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.reads: list[tuple[str, threading.Thread]] = []
        self.saves: list[tuple[str, threading.Thread]] = []

    def load_freshness(self, meter_id: str, device: str) -> tuple[int | None, str | None]:
        self.reads.append((meter_id, threading.current_thread()))
        return self.spool.load_freshness(meter_id, device)

    def save_freshness(self, meter_id: str, device: str, message_counter: int | None, meter_time: str | None) -> None:
        self.saves.append((meter_id, threading.current_thread()))
        self.spool.save_freshness(meter_id, device, message_counter, meter_time)


def test_a_meters_first_telegram_reads_the_spool_off_the_event_loop(tmp_path: Path) -> None:
    """FLAT-1's last accepted counter, 5, kept by the previous run: its first telegram in this run
    (counter 3, a replay) is refused on it, read off the loop; the next (counter 6) is taken, and
    its counter written off the loop, with no second read."""
    bus = WMBusBusConfig(
        "radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY),)
    )
    earlier = Spool(tmp_path / "s.sqlite")
    earlier.save_freshness("FLAT-1", "12345678", 5, "2026-03-05T00:00")
    earlier.close()
    spool = Spool(tmp_path / "s.sqlite")
    store = _FreshnessOnThreads(spool)
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    async def scenario() -> threading.Thread:
        listener = WMBusListener(bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None, freshness=store)
        await listener.handle(_clocked(100.0, 1, 7, 3, "2026-03-03T00:00"))  # replayed
        await listener.handle(_clocked(106.0, 2, 7, 6, "2026-03-06T00:00"))
        return threading.current_thread()

    try:
        loop_thread = asyncio.run(asyncio.wait_for(scenario(), 60))
        kept = spool.load_freshness("FLAT-1", "12345678")
    finally:
        spool.close()
    assert [r.volume_m3 for r in taken] == [106.0]
    assert [meter_id for meter_id, _ in store.reads] == ["FLAT-1"]
    assert [meter_id for meter_id, _ in store.saves] == ["FLAT-1"]
    assert [meter_id for meter_id, thread in store.reads + store.saves if thread is loop_thread] == []
    assert kept == (6, "2026-03-06T00:00")
