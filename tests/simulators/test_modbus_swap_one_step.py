"""A Modbus swap of two meters' unit ids is one step as a request sees it: none finds one meter at both.

Both swaps (the rig's ``swap_address``, which changes what stands behind each unit id's slot, and
:meth:`ModbusRtuSlaves.swap_unit_ids`) stored the two unit ids' meters one after the other. Under
CPython 3.11 nothing switches threads between two such stores (its eval loop looks for a switch at
calls and backward jumps), so each swap was one step by accident of the interpreter: a thread
switch there (a build without the GIL; a slot whose ``source`` became a property) let a request
find the first unit id changed and the second not. These tests put such a switch there (a store
that yields after it) and poll both units through the line's request handling while the swaps go
back and forth. Guard tests: without the yield, they pass on the code before as after. The last
test is no guard: a request reads its slot's profile under the same lock (before, without it).
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from firmware_protocols.modbus import MeterProfile, load_profile
from simulators.meter_model import MeterModel
from simulators.modbus_rtu import ModbusRtuSimulator, ModbusRtuSlaves, with_crc
from simulators.modelled_meter import ModelledMeter
from simulators.rig.config import parse_rig_text
from simulators.rig.meters import Watched
from simulators.rig.runner import Rig

NOW = datetime(2026, 3, 4, tzinfo=UTC)
SERIALS = {1: 40000001, 2: 40000002}  # unit id -> the serial number of the meter configured there
PROFILE = load_profile("smart_water_meter")
SWAPS = 400  # swaps, a swap back counting as one
RIG = f"""
[rig]
seed = 7
installed = "2026-01-01T00:00:00Z"
control = "127.0.0.1:0"

[[transport]]
name = "rtu"
protocol = "modbus_rtu"

[[meter]]
id = "M1"
kind = "smart_water_meter"
transport = "rtu"
address = 1
serial_number = "{SERIALS[1]}"

[[meter]]
id = "M2"
kind = "smart_water_meter"
transport = "rtu"
address = 2
serial_number = "{SERIALS[2]}"
"""


def _serial_at(slaves: ModbusRtuSlaves) -> Callable[[int], int]:
    """The serial number a request to a unit id gets, through the line's own request handling."""
    field = PROFILE.serial_field
    assert field is not None
    function = 0x04 if PROFILE.function == "input" else 0x03
    requests = {unit: with_crc(bytes([unit, function]) + struct.pack(">HH", field.register, 2)) for unit in SERIALS}

    def serial_at(unit: int) -> int:
        reply = slaves.handle(requests[unit], NOW)
        assert reply is not None
        return int.from_bytes(reply.data[3:7], "big")  # the u32 register pair, high word first

    return serial_at


def one_meter_at_both(serial_at: Callable[[int], int], swap: Callable[[], None]) -> list[tuple[int, int]]:
    """Poll unit 1 then unit 2 while ``swap`` runs :data:`SWAPS` times in a thread; each pair of polls
    that found one meter at both where no moment had it: (swaps done before, its serial number).

    With at most one swap begun between the two polls, the pair is of the meters before it (at their
    own units if the swaps done are even) or after it, or unit 1 before it and unit 2 after it: the
    meter at unit 1 before it, at both. The meter at unit 2 before it, at both, is no moment's."""
    assert (serial_at(1), serial_at(2)) == (SERIALS[1], SERIALS[2])  # read as configured
    counts = {"begun": 0, "done": 0}

    def swapper() -> None:
        for _ in range(SWAPS):
            counts["begun"] += 1
            time.sleep(0)  # the polls' turn, with a swap begun
            swap()
            counts["done"] += 1

    thread = threading.Thread(target=swapper)
    thread.start()
    both, during_a_swap = [], 0
    while thread.is_alive():
        done = counts["done"]
        first, second = serial_at(1), serial_at(2)
        begun = counts["begun"]
        if begun - done > 1:
            continue  # two swaps between them: any pair is some moment's
        during_a_swap += begun - done
        was_at_2 = SERIALS[2] if done % 2 == 0 else SERIALS[1]
        if first == second and (begun == done or first == was_at_2):
            both.append((done, first))
    thread.join()
    assert during_a_swap > 0  # the polls did come while a swap was under way
    return both


def _yielding_store(self: object, name: str, value: Any) -> None:
    object.__setattr__(self, name, value)
    if name == "source":  # what stands behind the unit id changed
        time.sleep(0)  # another thread runs here, as after a thread switch between the two stores


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig(parse_rig_text(RIG, now=NOW), clock=lambda: NOW)
    asyncio.run(rig.start())
    yield rig
    asyncio.run(rig.stop())


def test_no_request_finds_one_meter_at_both_unit_ids_while_the_rig_swaps_them(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Watched, "__setattr__", _yielding_store)
    (line,) = [line for line in rig._lines if isinstance(line, ModbusRtuSimulator)]
    swaps: list[int] = []

    def swap() -> None:  # the technician's swap_address, and its clear (swapped back)
        if swaps:
            rig.clear(swaps.pop())
        else:
            swaps.append(rig.inject("M1", {"kind": "swap_address", "with_meter": "M2"}).fault_id)

    assert one_meter_at_both(_serial_at(line.slaves), swap) == []  # before: [(0, 40000002), (3, 40000001), …]


class _YieldingUnits(dict[int, Any]):
    """The slaves' unit id -> meter mapping, yielding after each store into it."""

    def __setitem__(self, unit_id: int, meter: Any) -> None:
        super().__setitem__(unit_id, meter)
        time.sleep(0)


def test_no_request_finds_one_meter_at_both_unit_ids_while_the_rtu_slaves_swap_them() -> None:
    meters = [
        ModelledMeter(unit, PROFILE, MeterModel(f"M{unit}", installed=NOW, seed=unit), serial_number=str(serial))
        for unit, serial in SERIALS.items()
    ]
    slaves = ModbusRtuSlaves(meters)
    slaves._by_id = _YieldingUnits(slaves._by_id)
    assert one_meter_at_both(_serial_at(slaves), lambda: slaves.swap_unit_ids(1, 2)) == []


class _LockWitness:
    """A meter that notes, each time its profile is read, whether its slot's lock was held then."""

    def __init__(self, meter: ModelledMeter, lock: threading.Lock) -> None:
        self.meter, self.lock, self.held = meter, lock, list[bool]()

    @property
    def unit_id(self) -> int:
        return self.meter.unit_id

    @property
    def profile(self) -> MeterProfile:
        self.held.append(self.lock.locked())  # one thread here: held only by the read itself
        return self.meter.profile

    def registers_at(self, at: datetime) -> list[int]:
        return self.meter.registers_at(at)


def test_a_request_reads_its_slot_s_profile_under_the_lock_a_swap_takes() -> None:
    """The RTU line's answer reads the slot's profile (its function, its register addresses) at each
    request, as the TCP server's hook does: under the lock a swap of the transport's slots takes, so
    that no request reads it between a swap's two stores. Before, it read it without the lock."""
    lock = threading.Lock()
    meter = ModelledMeter(1, PROFILE, MeterModel("M1", installed=NOW, seed=1), serial_number=str(SERIALS[1]))
    witness = _LockWitness(meter, lock)
    slaves = ModbusRtuSlaves([Watched(witness, lock=lock)])
    assert _serial_at(slaves)(1) == SERIALS[1]  # a real request through the line's handling
    assert witness.held and all(witness.held), witness.held  # before: [False, False]
