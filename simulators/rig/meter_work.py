"""A technician's work at the rig's meters: two meters' addresses swapped, a meter exchanged.

Why: to rehearse what the gateway does when the meter at an address is not the one it was configured
for, its refusal by identification (M-Bus) or serial number (Modbus), on a running rig without
rewiring it. ``swap_address`` and ``exchange`` (:mod:`simulators.rig.faults`) are injected and cleared
like faults; :class:`MeterWork` checks them against the rig, does them on the transports and puts
things back when they are cleared.

On an M-Bus the work is done with the bus's own :meth:`~simulators.mbus_bus.MBusSimulator.exchange`
and :meth:`~simulators.mbus_bus.MBusSimulator.swap_primary_addresses`; on Modbus (RTU and TCP alike)
by changing which meter stands behind a unit id's :class:`~simulators.rig.meters.Watched` (the TCP
server's units are fixed when it starts; what answers behind each is not). A wire fault acts where it
was injected: on Modbus at the unit id, on M-Bus on the meter of that identification; one injected
after the work, on the meter now there (the exchanged meter's new one, on M-Bus).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial

from aquami.contracts.reads import utc_iso
from simulators.inlet_model import InletMeterModel
from simulators.mbus_bus import MBusSimulator
from simulators.mbus_slave import MBusWaterMeter
from simulators.meter_model import MeterModel
from simulators.modbus_unit import serial_number_for
from simulators.modelled_meter import ModelledMeter
from simulators.rig.config import serial_never_set
from simulators.rig.exchanged_meter import ExchangedMeter
from simulators.rig.faults import FaultSpec, refuse_work
from simulators.rig.meters import Watched
from simulators.rig.running import ActiveFault, RigMeter


@dataclass
class MeterWork:
    """The swaps and exchanges on the rig's ``meters``, and where each meter's place is on its transport.

    ``meters`` is the rig's own: a meter's ``where``, ``last_request``, ``register`` and
    ``fault_address`` follow the work done on it. ``where`` says where each transport listens.
    The rig calls it with its lock held.
    """

    meters: dict[str, RigMeter]
    models: Mapping[str, MeterModel | InletMeterModel]
    where: Mapping[str, str]  # transport name -> where it listens
    #: M-Bus transport name -> its bus
    buses: dict[str, MBusSimulator] = field(default_factory=dict)
    #: M-Bus meter id -> the meter on the bus in its place
    slaves: dict[str, MBusWaterMeter] = field(default_factory=dict)
    #: Modbus meter id -> the unit id's slot its meter stands in
    units: dict[str, Watched] = field(default_factory=dict)

    def add_bus(self, transport: str, bus: MBusSimulator, slaves: Mapping[str, MBusWaterMeter]) -> None:
        """An M-Bus transport started: its bus and the meter of each id on it."""
        self.buses[transport] = bus
        self.slaves.update(slaves)

    def add_unit(self, meter_id: str, slot: Watched) -> None:
        """A Modbus meter started: the unit id's slot it stands in."""
        self.units[meter_id] = slot

    def check(self, meter_id: str, spec: FaultSpec, fault_id: int, in_force: Collection[ActiveFault]) -> FaultSpec:
        """``spec`` for ``meter_id`` checked against the rig (ValueError in words), an exchange's new
        identification or serial number given (derived from the meter and ``fault_id``) unless it has
        one; ``in_force``: the rig's faults in force."""
        meter = self.meters[meter_id]
        busy = [f for f in in_force if f.spec.is_work and f.involves(meter_id)]
        if spec.kind == "swap_address":
            other_id = spec.with_meter or ""
            if other_id == meter_id:
                raise ValueError(f"with_meter: {meter_id} swaps its address with another meter, not itself")
            other = self.meters.get(other_id)
            if other is None:
                raise ValueError(f"with_meter: {other_id!r} is not on this rig")
            try:
                refuse_work(spec.kind, other.config.kind)
            except ValueError as error:
                raise ValueError(f"with_meter: {other_id}: {str(error).removeprefix('kind: ')}") from None
            if other.config.transport != meter.config.transport:
                raise ValueError(
                    f"with_meter: {meter_id} is on transport {meter.config.transport!r} and {other_id} on "
                    f"{other.config.transport!r}: a swap_address is between two meters of one transport"
                )
            if meter.protocol.startswith("modbus") and other.config.kind != meter.config.kind:
                raise ValueError(
                    f"with_meter: {meter_id} is a {meter.config.kind} and {other_id} a {other.config.kind}: their "
                    "register maps differ; swap the addresses of two meters of one kind"
                )
            if meter.protocol == "mbus" and self.slaves[meter_id].primary_address == 0 == (
                self.slaves[other_id].primary_address
            ):
                raise ValueError(
                    f"with_meter: {meter_id} and {other_id} are both at primary address 0 (reached by their "
                    "secondary address): a swap would change nothing"
                )
            busy += [f for f in in_force if f.spec.is_work and f.involves(other_id)]
        if busy:
            f = busy[0]
            raise ValueError(
                f"kind: {f.spec.kind} (fault {f.fault_id}, of {f.meter_id}) is in force: clear it first "
                "(one swap_address or exchange at a time on a meter)"
            )
        if spec.kind == "exchange":
            seed = f"{meter_id} exchange {fault_id}".encode()
            if meter.protocol == "mbus":
                spec = replace(spec, identification=spec.identification or f"{zlib.crc32(seed) % 10**8:08d}")
                taken = {m: s.identification for m, s in self.slaves.items() if m in self._on(meter)}
                self._refuse_taken("identification", spec.identification or "", meter_id, taken)
            else:
                spec = replace(spec, serial_number=spec.serial_number or serial_number_for(seed.decode()))
                # one never set (0, all ones) is every such meter's: a new meter as it leaves the factory
                taken = {m: self._serial(m) for m in self._on(meter) if self._serial(m)}
                taken = {m: s for m, s in taken.items() if not serial_never_set(s)}
                self._refuse_taken("serial_number", spec.serial_number or "", meter_id, taken)
        return spec

    def _on(self, meter: RigMeter) -> list[str]:
        """The ids of the meters on ``meter``'s transport."""
        return [m for m, rm in self.meters.items() if rm.config.transport == meter.config.transport]

    def _serial(self, meter_id: str) -> str:
        """The serial number the meter at ``meter_id``'s place serves now ("" for none)."""
        source = self.units[meter_id].source
        return source.serial_number if isinstance(source, ModelledMeter) else ""

    def _refuse_taken(self, what: str, value: str, meter_id: str, taken: dict[str, str]) -> None:
        for other, its in taken.items():
            if its == value:
                whose = "the meter's own: the new meter has another" if other == meter_id else f"{other}'s"
                transport = self.meters[meter_id].config.transport
                raise ValueError(f"{what}: {value} is {whose} on transport {transport!r}; give another")

    def undone(self, meter_id: str, spec: FaultSpec) -> str:
        """What undoing ``spec``'s work on ``meter_id`` says, with the meters where they stand now,
        doing nothing: the words of work over before the rig started, undone at its ``until`` by the
        rig that ran it (its restart has nothing to do again, nor to undo). "" if a meter of it is
        no longer on the rig."""
        if spec.kind == "swap_address":
            if spec.with_meter not in self.meters:
                return ""
            return f"swapped back: {self._both_at(meter_id, spec.with_meter or '')}"
        return self._put_back(meter_id, self._who(meter_id))

    def do(self, meter_id: str, spec: FaultSpec, since: datetime) -> tuple[Callable[[], str], str]:
        """Do the work of ``spec`` on ``meter_id`` as of ``since`` on the transports; returns the
        undoing (which puts things back and says what it did) and what was done."""
        if spec.kind == "swap_address":
            assert spec.with_meter is not None
            return self._swap(meter_id, spec.with_meter)
        return self._exchange(meter_id, spec, since)

    def _swap(self, first: str, second: str) -> tuple[Callable[[], str], str]:
        """Swap the two meters' addresses; returns the undoing (which says what it did) and what was done."""
        one, other = self.meters[first], self.meters[second]
        if one.protocol == "mbus":
            bus = self.buses[one.config.transport]

            def swap() -> None:
                bus.swap_primary_addresses(self.slaves[first].identification, self.slaves[second].identification)
        else:
            slot, other_slot = self.units[first], self.units[second]
            assert slot.lock is other_slot.lock  # one transport's

            def swap() -> None:
                with slot.lock:  # one step for a request: none finds one meter at both unit ids
                    slot.source, other_slot.source = other_slot.source, slot.source
                one.last_request, other.last_request = other.last_request, one.last_request

        def undo() -> str:
            swap()
            self._place(first)
            self._place(second)
            return f"swapped back: {self._both_at(first, second)}"

        swap()
        self._place(first)
        self._place(second)
        return undo, f"addresses swapped: {self._both_at(first, second)}"

    def _both_at(self, first: str, second: str) -> str:
        """Where two meters answer now, in words (a swap's, and its undoing's)."""
        return f"{first} answers at {self._address(first)} and {second} at {self._address(second)}"

    def _exchange(self, meter_id: str, spec: FaultSpec, since: datetime) -> tuple[Callable[[], str], str]:
        """Put a new meter in ``meter_id``'s place; returns the undoing and what was done."""
        meter = self.meters[meter_id]
        fitted = ExchangedMeter(self.models[meter_id], since, spec.volume_m3 or 0.0)
        kept = (meter.last_request, meter.register, meter.fault_address)
        its = self._who(meter_id)  # the old meter's identification or serial number
        if meter.protocol == "mbus":
            bus = self.buses[meter.config.transport]
            old = self.slaves[meter_id]
            identification = spec.identification or ""
            new = MBusWaterMeter(fitted, 0, identification, manufacturer=meter.config.manufacturer)
            bus.exchange(old.identification, new)
            self.slaves[meter_id] = new
            meter.last_request = partial(getattr, new, "last_request")
            meter.fault_address = new.fault_address
            who = f"identification {identification}"

            def put_back() -> None:
                bus.exchange(new.identification, old)
                self.slaves[meter_id] = old
        else:
            slot = self.units[meter_id]
            previous = slot.source
            assert isinstance(previous, ModelledMeter)
            serial = spec.serial_number or ""
            slot.source = ModelledMeter(previous.unit_id, previous.profile, fitted, serial_number=serial)
            who = f"serial number {serial}"

            def put_back() -> None:
                slot.source = previous

        meter.register = lambda at: f"{fitted.volume_m3(at):.3f} m3"
        self._place(meter_id)
        start = f"{spec.volume_m3 or 0.0:g}"

        def undo() -> str:
            put_back()
            meter.last_request, meter.register, meter.fault_address = kept
            self._place(meter_id)
            return self._put_back(meter_id, its)

        done = (
            f"exchanged: the meter with {who} answers at {self._address(meter_id)} in place of the one with "
            f"{its}, its register from {start} m3 at {utc_iso(since)}"
        )
        return undo, done

    def _put_back(self, meter_id: str, its: str) -> str:
        """An exchange's undoing, in words: the old meter (``its`` identification or serial number) back."""
        return f"the old meter, {its}, back at {self._address(meter_id)}, its register as if never taken off"

    def _who(self, meter_id: str) -> str:
        """The meter in ``meter_id``'s place now, in words: its identification (M-Bus) or serial number."""
        if self.meters[meter_id].protocol == "mbus":
            return f"identification {self.slaves[meter_id].identification}"
        return f"serial number {self._serial(meter_id)}"

    def _address(self, meter_id: str) -> str:
        """Where the meter in ``meter_id``'s place answers now, in words."""
        meter = self.meters[meter_id]
        transport = meter.config.transport
        if meter.protocol == "mbus":
            return f"primary address {self.slaves[meter_id].primary_address} of {transport}"
        return f"unit {self._unit_of(meter_id)} of {transport}"

    def _unit_of(self, meter_id: str) -> int:
        """The unit id the meter ``meter_id`` answers at: the slot it stands in now."""
        model = self.models[meter_id]
        for other, slot in self.units.items():
            source = slot.source
            if isinstance(source, ModelledMeter) and _model_of(source) is model:
                return self.meters[other].fault_address
        return self.meters[meter_id].fault_address

    def _place(self, meter_id: str) -> None:
        """The meter's ``where`` (the live table's), after a technician's work moved it."""
        meter = self.meters[meter_id]
        transport = meter.config.transport
        if meter.protocol == "mbus":
            slave = self.slaves[meter_id]
            at = f"primary {slave.primary_address} secondary {slave.identification}"
            meter.where = f"{self.where[transport]} {at}"
        else:
            meter.where = f"{self.where[transport]} unit {self._unit_of(meter_id)}"


def _model_of(source: ModelledMeter) -> object:
    """The meter model behind a Modbus meter (an exchanged meter's: the connection's)."""
    meter = source.meter
    return meter.meter if isinstance(meter, ExchangedMeter) else meter
