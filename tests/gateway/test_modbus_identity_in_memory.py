"""A Modbus poll of a meter known in this run by the serial number it answers with takes no thread for
its check (gateway.modbus_identity.taken_from_memory); every other answer is checked in a thread as
before (gateway.modbus_transport): a first answer, an earlier version's row given its kind, a
configured serial number other than the one remembered (remembered in its place), another meter's.

Before, every poll took a thread for its check, a known meter's too: nothing was read or written.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gateway.modbus_transport
from gateway.config import MeterConfig
from gateway.meter_identity import MeterIdentities
from gateway.spool import Spool
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings
from tests.gateway.test_modbus_serial_number import NOW, PARITY, Polls, _meter, _rtu_bus

SERIAL_NUMBER = "serial number"


class _Checks:
    """gateway.modbus_transport's check_serial_number, each call recorded (the meter and the thread it
    ran on) before it runs as it is."""

    def __init__(self, check: Callable[..., None]) -> None:
        self.check = check
        self.calls: list[tuple[str, threading.Thread]] = []

    def __call__(self, identities: MeterIdentities, meter: MeterConfig, *args: Any) -> None:
        self.calls.append((meter.meter_id, threading.current_thread()))
        self.check(identities, meter, *args)

    def of(self, meter_id: str) -> int:
        return sum(1 for called, _ in self.calls if called == meter_id)


def test_a_known_meter_s_polls_take_no_thread_for_their_check_and_the_others_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each meter polled 5 times. FLAT-5, never heard: its first answer checked (in a thread) and
    remembered, the next 4 not checked. FLAT-6, remembered (and known in this run) as 40000099, now
    configured with the 40000006 it answers with: checked, 40000006 remembered in its place, then not
    checked. FLAT-7, an earlier version's row (no kind), known in this run: checked, given its kind,
    then not. Then FLAT-5's meter exchanged: checked, and refused."""
    checks = _Checks(gateway.modbus_transport.check_serial_number)
    monkeypatch.setattr(gateway.modbus_transport, "check_serial_number", checks)
    spool = Spool(tmp_path / "s.sqlite")
    spool.save_identity("FLAT-6", "40000099", "2026-06-01T00:00:00Z", SERIAL_NUMBER)
    spool.save_identity("FLAT-7", "40000007", "2026-06-01T00:00:00Z")
    identities = MeterIdentities(spool)
    assert identities.first("FLAT-6") is not None and identities.first("FLAT-7") is not None  # known in this run
    meters = (MeterConfig("FLAT-5", 5), MeterConfig("FLAT-6", 6, serial_number="40000006"), MeterConfig("FLAT-7", 7))
    simulated = [_meter(f"M{unit}", unit, 100.0 * unit, f"4000000{unit}") for unit in (5, 6, 7)]
    try:
        with ModbusRtuSimulator(simulated, LineSettings(baudrate=19200, parity=PARITY), clock=lambda: NOW) as sim:
            polls = Polls(_rtu_bus(sim.port, *meters), identities)
            results = polls.run(*(["FLAT-5", "FLAT-6", "FLAT-7"] * 5))
            sim.slaves.exchange(5, _meter("NEW", 5, 0.0, "40000055"))
            refused = Polls(_rtu_bus(sim.port, *meters), identities).run("FLAT-5")
        assert [error for _, error in results] == [None] * 15
        assert [checks.of(f"FLAT-{unit}") for unit in (5, 6, 7)] == [2, 1, 1]
        assert [thread for _, thread in checks.calls if thread is threading.main_thread()] == []
        assert refused[0][0] is None and "serial number 40000055 answered, not 40000005" in str(refused[0][1])
        assert spool.load_identity("FLAT-5") == ("40000005", "2026-06-04T03:30:00Z", SERIAL_NUMBER)
        assert spool.load_identity("FLAT-6") == ("40000006", "2026-06-04T03:30:00Z", SERIAL_NUMBER)
        assert spool.load_identity("FLAT-7") == ("40000007", "2026-06-01T00:00:00Z", SERIAL_NUMBER)
    finally:
        spool.close()


class _Saves:
    """The spool, as an identity store, counting its writes."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.saves = 0

    def load_identity(self, meter_id: str) -> tuple[str, str, str | None] | None:
        return self.spool.load_identity(meter_id)

    def save_identity(self, meter_id: str, identification: str, first_at: str, kind: str | None = None) -> None:
        self.saves += 1
        self.spool.save_identity(meter_id, identification, first_at, kind)


IDENTITIES = st.sampled_from(["40000005", "40000006", "11111111"])
KINDS = st.sampled_from([None, SERIAL_NUMBER, "identification"])


def test_an_answer_known_in_memory_is_one_a_take_would_take_changing_nothing(tmp_path: Path) -> None:
    """Whatever the spool remembers (nothing, or an identity of either kind, or of none: an earlier
    version's row), whether this run has read it yet, the configured identity and the answer: where
    :meth:`MeterIdentities.known` says the answer is known, :meth:`take` takes it, and writes and
    changes nothing; and it says so for every answer of a meter known by it, read in this run."""
    store = _Saves(Spool(tmp_path / "s.sqlite"))
    meter_ids = (f"FLAT-{n}" for n in itertools.count())

    @given(
        st.one_of(st.none(), st.tuples(IDENTITIES, KINDS)),
        st.booleans(),
        st.one_of(st.none(), IDENTITIES),
        IDENTITIES,
        st.sampled_from([SERIAL_NUMBER, "identification"]),
    )
    def known_is_taken_unchanged(
        stored: tuple[str, str | None] | None, read: bool, configured: str | None, sent: str, what: str
    ) -> None:
        meter_id = next(meter_ids)
        if stored is not None:
            store.spool.save_identity(meter_id, stored[0], "2026-06-01T00:00:00Z", stored[1])
        identities = MeterIdentities(store)
        if read:
            identities.first(meter_id)
        known = identities.known(meter_id, sent, configured, what)
        before, saves = identities.first(meter_id), store.saves
        taken = identities.take(meter_id, sent, configured, NOW + timedelta(days=1), what)
        if known:
            assert taken is None
            assert identities.first(meter_id) is before and store.saves == saves
        if read and stored == (sent, what) and configured in (None, sent):
            assert known

    try:
        known_is_taken_unchanged()
    finally:
        store.spool.close()
