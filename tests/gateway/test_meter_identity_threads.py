"""One :class:`~gateway.meter_identity.MeterIdentities` is used from several threads at once (each
Modbus and M-Bus poll's check runs in a worker thread; the event loop reads it for a scan command):
an answer checked in one thread is never lost to another's read of the spool, nor two answers for one
meter both taken as its first.

Before, it held no lock: a read of the spool that came back after another thread had remembered the
meter's first answer put its older "none remembered" back over it, and the next answer, another
meter's, was taken as the first.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.meter_identity import MeterIdentities
from gateway.spool import Spool

NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)
SERIAL_NUMBER = "serial number"


class _HeldAfterItsRead:
    """The spool, as an identity store, whose first load of ``meter_id`` reads the spool, then waits
    (``read`` set) until ``go`` is set before it returns what it read: a thread held between its read
    and its use of it, as the scheduler of a busy machine may hold it."""

    def __init__(self, spool: Spool, meter_id: str) -> None:
        self.spool = spool
        self.meter_id = meter_id
        self.read = threading.Event()
        self.go = threading.Event()
        self._held = False

    def load_identity(self, meter_id: str) -> tuple[str, str, str | None] | None:
        loaded = self.spool.load_identity(meter_id)
        if meter_id == self.meter_id and not self._held:
            self._held = True
            self.read.set()
            assert self.go.wait(30), "the test never let the held read go on"
        return loaded

    def save_identity(self, meter_id: str, identification: str, first_at: str, kind: str | None = None) -> None:
        self.spool.save_identity(meter_id, identification, first_at, kind)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    opened = Spool(tmp_path / "s.sqlite")
    yield opened
    opened.close()


def test_a_first_answer_taken_while_another_thread_reads_the_spool_is_not_lost(spool: Spool) -> None:
    """Thread A reads FLAT-5's first answer from the spool (none yet) and is held there; meanwhile a
    poll takes 40000005 as its first answer (remembered, and kept in the spool); then A goes on. An
    answer 40000099 (another meter, at FLAT-5's unit) is refused, 40000005 expected. Before:
    A's "none" was put over 40000005, and 40000099 was taken as FLAT-5's first answer."""
    store = _HeldAfterItsRead(spool, "FLAT-5")
    identities = MeterIdentities(store)
    reader = threading.Thread(target=identities.first, args=("FLAT-5",))
    reader.start()
    try:
        assert store.read.wait(30)
        assert identities.take("FLAT-5", "40000005", None, NOW, SERIAL_NUMBER) is None
    finally:
        store.go.set()
        reader.join(30)
    assert identities.take("FLAT-5", "40000099", None, NOW + timedelta(minutes=1), SERIAL_NUMBER) == "40000005"
    assert spool.load_identity("FLAT-5") == ("40000005", "2026-06-04T03:30:00Z", SERIAL_NUMBER)


def test_answers_checked_at_once_in_many_threads_take_one_first_answer_per_meter(spool: Spool) -> None:
    """Eight threads at once, each checking an answer with a serial number of its own for each of 40
    meters (the gateway's one MeterIdentities, on the spool): for each meter exactly one answer is
    taken, every other refused with that one expected, and the spool keeps that one. Before, several
    threads each read "none remembered" from the spool and took their own answer as the meter's first."""
    identities = MeterIdentities(spool)
    meter_ids = [f"FLAT-{n}" for n in range(40)]
    threads = 8
    start = threading.Barrier(threads)

    def check(thread: int) -> list[str | None]:
        start.wait(30)
        return [identities.take(m, f"4000{thread:04d}", None, NOW, SERIAL_NUMBER) for m in meter_ids]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switched as often as the interpreter can: the races' windows met
    try:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(check, range(threads)))
    finally:
        sys.setswitchinterval(interval)
    for i, meter_id in enumerate(meter_ids):
        answers = [results[thread][i] for thread in range(threads)]
        taken = [f"4000{thread:04d}" for thread in range(threads) if answers[thread] is None]
        assert len(taken) == 1, f"{meter_id}: {taken} all taken as its first answer"
        assert [a for a in answers if a is not None] == taken * (threads - 1)
        stored = spool.load_identity(meter_id)
        assert stored is not None and stored[0] == taken[0]
