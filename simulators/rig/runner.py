"""The running rig: every configured meter on its transport, their state, and faults coming and going.

One process: the Modbus TCP servers run on the asyncio loop (pymodbus), each behind a
:class:`~simulators.tcp_fault_proxy.ModbusTcpFaultProxy` on the configured port so wire faults can
reach them; the serial transports (Modbus RTU, M-Bus, the wM-Bus receiver) each run on their own
pty thread. Every transport has one :class:`~simulators.rig.faults.LivePlan`; a meter's wire faults
are rules for its address there (Modbus unit id; on the M-Bus and the wM-Bus its identification,
which, unlike an M-Bus primary address, is the meter's alone and does not change).

A technician's work at the meters (``swap_address``, ``exchange``: :mod:`simulators.rig.faults`) is
done on the transports: on an M-Bus with the bus's own :meth:`~simulators.mbus_bus.MBusSimulator.exchange`
and :meth:`~simulators.mbus_bus.MBusSimulator.swap_primary_addresses`; on Modbus (RTU and TCP alike)
by changing which meter stands behind a unit id's :class:`~simulators.rig.meters.Watched` (the TCP
server's units are fixed when it starts; what answers behind each is not). A wire fault acts where it
was injected: on Modbus at the unit id, on M-Bus on the meter of that identification; one injected
after the work, on the meter now there (the exchanged meter's new one, on M-Bus).

Given a state file (:mod:`simulators.rig.state`), the rig keeps every fault it applies there and
replays them at start-up: a restarted rig's registers read what they would have without the restart.
"""

from __future__ import annotations

import itertools
import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import utc_iso
from firmware_protocols.modbus import load_profile
from simulators.inlet_model import InletMeterModel
from simulators.mbus_bus import MBusSimulator, mbus_line
from simulators.mbus_slave import MBusWaterMeter
from simulators.meter_model import MeterModel
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.modbus_unit import RegisterSource, serial_number_for
from simulators.modelled_meter import ModelledMeter
from simulators.rig.config import MeterConfig, RigConfig, TransportConfig, serial_number
from simulators.rig.exchanged_meter import ExchangedMeter
from simulators.rig.faults import (
    FaultSpec,
    LivePlan,
    end_meter_fault,
    inject_meter_fault,
    meter_fault,
    parse_fault,
    refuse_work,
    wire_rule,
)
from simulators.rig.meters import PulseCounter, Watched
from simulators.rig.state import FaultRecord, load_state_and_counters, save_state
from simulators.serial_line import LineSettings
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wmbus_meter import MESSAGE_COUNTER_MODULUS, WMBusMeter
from simulators.wmbus_receiver import WMBusReceiverSimulator

log = logging.getLogger(__name__)
#: Message counters a mode 7 radio meter reserves at a time, written to the state file before it
#: sends the first: one write per 256 telegrams (every 68 min at the rig's 16 s).
COUNTER_RESERVE = 256

#: said of a water fault cleared before the meter's next step, where it would have begun
NEVER_TOOK_EFFECT = "cleared before the meter's next step (its since): it never took effect, the water did not change"


class UnknownMeterError(KeyError):
    pass


@dataclass
class RigMeter:
    config: MeterConfig
    protocol: str
    model: MeterModel | InletMeterModel
    fault_address: int
    plan: LivePlan
    last_request: Callable[[], datetime | None]
    register: Callable[[datetime], str]
    where: str = ""


@dataclass
class ActiveFault:
    fault_id: int
    meter_id: str
    spec: FaultSpec
    since: datetime
    clear: Callable[[datetime], datetime | None]  # ends it at the given time; returns its end as applied
    until: datetime | None = None
    record: FaultRecord | None = None  # what the state file keeps of it
    done: str = ""  # a technician's work: what the rig did (put back, once cleared)

    def involves(self, meter_id: str) -> bool:
        """Whether the fault is ``meter_id``'s: its own, or the other meter of a swap."""
        return meter_id in (self.meter_id, self.spec.with_meter)

    @property
    def never_took_effect(self) -> bool:
        """A water fault cleared before the meter's next step, where it would have begun: its
        ``since`` and ``until`` are that step, and the water never changed."""
        in_the_water = not (self.spec.is_wire or self.spec.is_work)
        return in_the_water and self.until is not None and self.until <= self.since

    def to_json(self) -> dict[str, Any]:
        """The endpoint's answer for this fault, its times in UTC with a ``Z`` as everywhere else."""
        answer: dict[str, Any] = {
            "id": self.fault_id,
            "meter": self.meter_id,
            "since": utc_iso(self.since),
            "until": None if self.until is None else utc_iso(self.until),
            **self.spec.to_json(),
        }
        if self.never_took_effect:
            answer["note"] = NEVER_TOOK_EFFECT
        if self.done:
            answer["done"] = self.done
        return answer


@dataclass
class Rig:
    """The rig of ``config``; with a ``state_path`` its faults outlive a restart (:mod:`simulators.rig.state`)."""

    config: RigConfig
    clock: Clock = utc_now
    state_path: Path | None = None
    meters: dict[str, RigMeter] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[int, ActiveFault] = {}
        kinds = {m.meter_id: m.kind for m in self.config.meters}
        loaded: list[FaultRecord] = []
        #: each mode 7 radio meter's message counter reserved: none sent above it (simulators.rig.state)
        self._counters: dict[str, int] = {}
        if self.state_path is not None:
            loaded, self._counters = load_state_and_counters(
                self.state_path, self.config.seed, self.config.installed, kinds, self.config.step_s
            )
        self._records: dict[int, FaultRecord] = {r.fault_id: r for r in loaded}
        self._ids = itertools.count(max(self._records, default=0) + 1)
        self._plans = {t.name: LivePlan(seed=self.config.seed, stream=t.name) for t in self.config.transports}
        self._tcp: list[tuple[ModbusTcpSimulator, ModbusTcpFaultProxy]] = []
        self._lines: list[ModbusRtuSimulator | MBusSimulator | WMBusReceiverSimulator] = []
        self.where: dict[str, str] = {}  # transport name -> where it listens
        self.framing: dict[str, LineSettings] = {}  # serial transport name -> its line's framing and timing
        self._buses: dict[str, MBusSimulator] = {}  # M-Bus transport name -> its bus
        self._slaves: dict[str, MBusWaterMeter] = {}  # M-Bus meter id -> the meter on the bus in its place
        self._units: dict[str, Watched] = {}  # Modbus meter id -> the unit id's slot its meter stands in
        self._models = self._build_models()

    # ---- building -------------------------------------------------------------------------------

    def _build_models(self) -> dict[str, MeterModel | InletMeterModel]:
        cfg = self.config
        models: dict[str, MeterModel | InletMeterModel] = {}
        for m in cfg.meters:
            if m.kind != "dma_inlet":
                models[m.meter_id] = MeterModel(
                    m.meter_id, installed=cfg.installed, seed=cfg.seed, initial_m3=m.initial_m3, dma="RIG",
                    step_s=cfg.step_s,
                )  # fmt: skip
        for m in cfg.meters:
            if m.kind == "dma_inlet":
                customers = [models[c] for c in m.customers]
                models[m.meter_id] = InletMeterModel(
                    m.meter_id, "RIG", cast(list[MeterModel], customers), installed=cfg.installed,
                    leakage_m3h=m.leakage_m3h, initial_m3=m.initial_m3,
                )  # fmt: skip
        return models

    def _modbus_unit(self, m: MeterConfig) -> tuple[Watched, Callable[[datetime], str]]:
        model = self._models[m.meter_id]
        assert m.address is not None
        source: RegisterSource
        if m.kind == "pulse_counter":
            assert isinstance(model, MeterModel)
            counter = PulseCounter(m.address, model, m.litres_per_pulse, self.config.installed)
            source = counter
            return Watched(source), lambda at: f"{counter.pulses(at)} pulses"
        profile = load_profile("electromagnetic_flow_meter" if m.kind == "dma_inlet" else "smart_water_meter")
        source = ModelledMeter(m.address, profile, model, serial_number=serial_number(m) or "")
        return Watched(source), lambda at: f"{model.read(at).volume_m3:.3f} m3"

    def _volume(self, meter_id: str) -> Callable[[datetime], str]:
        model = self._models[meter_id]
        return lambda at: f"{model.read(at).volume_m3:.3f} m3"

    async def start(self) -> None:
        """Start every transport, with the faults of the state file and the config; :attr:`where` then
        says where each listens."""
        now = self.clock()
        records = self._records_at_start(now)
        with self._lock:
            for record in records:
                if not (record.spec.is_wire or record.spec.is_work):
                    self._apply(record)  # before the history is worked out: it has them in
        for model in self._models.values():
            model.read(now)  # work out the days since installation before the first request
        for transport in self.config.transports:
            members = [m for m in self.config.meters if m.transport == transport.name]
            await self._start_transport(transport, members)
        with self._lock:
            for record in records:
                end = wire_rule(record.spec, 0, record.since).end if record.spec.is_wire else None
                on_transports = record.spec.is_wire or record.spec.is_work
                if on_transports and record.cleared is None and (end is None or end > now):
                    try:
                        self._apply(record)  # a wire fault over by now has nothing to replay
                    except ValueError as error:  # work on a meter the rig file no longer has as it was
                        log.warning("fault %s of %s not done again: %s", record.fault_id, record.meter_id, error)
                        record.cleared = now
            self._save()

    def _records_at_start(self, now: datetime) -> list[FaultRecord]:
        """The faults to apply at start, oldest first: the state file's, then the config's it has not.

        A config fault keeps its record (and start) while the config still has it; one the config no
        longer has (or has changed) ends now, and the changed one starts now.
        """
        by_id = {m.meter_id: m for m in self.config.meters}
        for record in self._records.values():
            meter = by_id.get(record.meter_id)
            index = record.config_index
            if meter is None or index is None or record.cleared is not None:
                continue
            if index >= len(meter.faults) or meter.faults[index] != record.spec:
                record.cleared = now
        for meter in self.config.meters:
            for index, spec in enumerate(meter.faults):
                kept = any(
                    r.meter_id == meter.meter_id and r.config_index == index and r.cleared is None
                    for r in self._records.values()
                )
                if not kept:
                    record = FaultRecord(next(self._ids), meter.meter_id, spec, now, config_index=index)
                    self._records[record.fault_id] = record
        return sorted((r for r in self._records.values() if r.meter_id in by_id), key=lambda r: r.fault_id)

    async def _start_transport(self, t: TransportConfig, members: Sequence[MeterConfig]) -> None:
        plan = self._plans[t.name]
        if t.protocol in ("modbus_tcp", "modbus_rtu"):
            units = {m.meter_id: self._modbus_unit(m) for m in members}
            watched = [u for u, _ in units.values()]
            if t.protocol == "modbus_tcp":
                simulator = ModbusTcpSimulator(watched, host=t.host, port=0, clock=self.clock, name=t.name)
                await simulator.start()
                proxy = ModbusTcpFaultProxy(t.host, simulator.port, plan, host=t.host, port=t.port, clock=self.clock)
                await proxy.start()
                self._tcp.append((simulator, proxy))
                self.where[t.name] = f"{t.host}:{proxy.port}"
            else:
                settings = LineSettings(baudrate=t.baudrate, parity="E")
                line = ModbusRtuSimulator(watched, settings, plan, self.clock).start()
                self._lines.append(line)
                self.where[t.name] = line.port
                self.framing[t.name] = settings
            for m in members:
                unit, register = units[m.meter_id]
                assert m.address is not None
                self._units[m.meter_id] = unit
                self._add(m, t, m.address, plan, partial(getattr, unit, "last_request"), register)
        elif t.protocol == "mbus":
            slaves = {
                m.meter_id: MBusWaterMeter(
                    cast(MeterModel, self._models[m.meter_id]),
                    m.address or 0,
                    m.secondary or "",
                    manufacturer=m.manufacturer,
                )
                for m in members
            }
            settings = mbus_line(t.baudrate)
            bus = MBusSimulator(list(slaves.values()), settings, plan, self.clock).start()
            self._lines.append(bus)
            self._buses[t.name] = bus
            self._slaves.update(slaves)
            self.where[t.name] = bus.port
            self.framing[t.name] = settings
            for m in members:
                slave = slaves[m.meter_id]
                self._add(
                    m, t, slave.fault_address, plan, partial(getattr, slave, "last_request"), self._volume(m.meter_id)
                )
        else:
            radios = {
                m.meter_id: WMBusMeter(
                    cast(MeterModel, self._models[m.meter_id]),
                    m.secondary or "",
                    m.key or b"",
                    manufacturer=m.manufacturer,
                    interval_s=m.interval_s,
                    security_mode=cast(Literal[5, 7], m.security_mode),
                    message_counter=self._counters.get(m.meter_id, 0),
                    reserve=partial(self._reserve_counter, m.meter_id),
                )
                for m in members
            }
            settings = LineSettings(baudrate=t.baudrate, parity="N", idle_chars=3.5, min_idle_s=0.0)
            receiver = WMBusReceiverSimulator(list(radios.values()), settings, plan, self.clock, self.config.seed)
            self._lines.append(receiver.start())
            self.where[t.name] = receiver.port
            self.framing[t.name] = settings
            for m in members:
                radio = radios[m.meter_id]
                self._add(m, t, radio.address, plan, partial(getattr, radio, "last_sent"), self._volume(m.meter_id))

    def _add(
        self,
        m: MeterConfig,
        t: TransportConfig,
        address: int,
        plan: LivePlan,
        last: Callable[[], datetime | None],
        register: Callable[[datetime], str],
    ) -> None:
        if t.protocol.startswith("modbus"):
            where = f"{self.where[t.name]} unit {address}"
        elif t.protocol == "mbus":
            where = f"{self.where[t.name]} primary {m.address} secondary {m.secondary}"
        else:
            where = f"{self.where[t.name]} id {m.secondary}"
        self.meters[m.meter_id] = RigMeter(
            m, t.protocol, self._models[m.meter_id], address, plan, last, register, where
        )

    async def stop(self) -> None:
        for line in self._lines:
            line.stop()
        for simulator, proxy in self._tcp:
            await proxy.stop()
            await simulator.stop()

    # ---- faults ---------------------------------------------------------------------------------

    def inject(self, meter_id: str, request: dict[str, Any]) -> ActiveFault:
        """Inject a fault described as in :mod:`simulators.rig.faults`; ValueError says what is wrong."""
        meter = self.meters.get(meter_id)
        if meter is None:
            raise UnknownMeterError(meter_id)
        spec = parse_fault(request, meter.config.kind)
        with self._lock:
            fault_id = next(self._ids)
            if spec.is_work:
                spec = self._check_work(meter_id, spec, fault_id)
            record = FaultRecord(fault_id, meter_id, spec, self.clock())
            fault = self._apply(record)
            self._records[record.fault_id] = record
            self._save()
            assert fault is not None
            return fault

    def _apply(self, record: FaultRecord) -> ActiveFault | None:
        """Put ``record``'s fault on its meter as of its ``since``; one cleared is ended again at its
        ``cleared`` (its water stays) and returns None. Call with the lock held."""
        meter_id, spec, since = record.meter_id, record.spec, record.since
        fault: ActiveFault
        if spec.is_work:
            fault = self._do_work(record)
        elif spec.is_wire:
            meter = self.meters[meter_id]
            rule = wire_rule(spec, meter.fault_address, since)
            handle = meter.plan.add(rule)

            def remove(at: datetime) -> datetime:
                meter.plan.remove(handle)
                return at

            fault = ActiveFault(record.fault_id, meter_id, spec, since, remove, rule.end, record)
        else:
            model = self._models[meter_id]
            event = inject_meter_fault(model, meter_fault(spec, since))
            if record.cleared is not None:
                end_meter_fault(model, event, record.cleared)
                return None
            fault = ActiveFault(
                # since and until as the meter applies them (from its next step on)
                record.fault_id,
                meter_id,
                spec,
                event.start,
                lambda at: end_meter_fault(model, event, at),
                event.end,
                record,
            )
        self._faults[fault.fault_id] = fault
        return fault

    # ---- a technician's work at the meters ----------------------------------------------------

    def _check_work(self, meter_id: str, spec: FaultSpec, fault_id: int) -> FaultSpec:
        """``spec`` for ``meter_id`` checked against the rig (ValueError in words), an exchange's new
        identification or serial number given (derived from the meter and ``fault_id``) unless it has
        one. Call with the lock held."""
        meter = self.meters[meter_id]
        busy = [f for f in self._faults.values() if f.spec.is_work and f.involves(meter_id)]
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
            if meter.protocol == "mbus" and self._slaves[meter_id].primary_address == 0 == (
                self._slaves[other_id].primary_address
            ):
                raise ValueError(
                    f"with_meter: {meter_id} and {other_id} are both at primary address 0 (reached by their "
                    "secondary address): a swap would change nothing"
                )
            busy += [f for f in self._faults.values() if f.spec.is_work and f.involves(other_id)]
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
                taken = {m: s.identification for m, s in self._slaves.items() if m in self._on(meter)}
                self._refuse_taken("identification", spec.identification or "", meter_id, taken)
            else:
                spec = replace(spec, serial_number=spec.serial_number or serial_number_for(seed.decode()))
                taken = {m: self._serial(m) for m in self._on(meter) if self._serial(m)}
                self._refuse_taken("serial_number", spec.serial_number or "", meter_id, taken)
        return spec

    def _on(self, meter: RigMeter) -> list[str]:
        """The ids of the meters on ``meter``'s transport."""
        return [m for m, rm in self.meters.items() if rm.config.transport == meter.config.transport]

    def _serial(self, meter_id: str) -> str:
        """The serial number the meter at ``meter_id``'s place serves now ("" for none)."""
        source = self._units[meter_id].source
        return source.serial_number if isinstance(source, ModelledMeter) else ""

    def _refuse_taken(self, what: str, value: str, meter_id: str, taken: dict[str, str]) -> None:
        for other, its in taken.items():
            if its == value:
                whose = "the meter's own: the new meter has another" if other == meter_id else f"{other}'s"
                transport = self.meters[meter_id].config.transport
                raise ValueError(f"{what}: {value} is {whose} on transport {transport!r}; give another")

    def _do_work(self, record: FaultRecord) -> ActiveFault:
        """Do ``record``'s work on the transports; the fault's clear puts things back. Call with the lock held."""
        meter_id, spec = record.meter_id, record.spec
        if spec.kind == "swap_address":
            assert spec.with_meter is not None
            undo, done = self._swap(meter_id, spec.with_meter)
        else:
            undo, done = self._exchange(meter_id, spec, record.since)

        def clear(at: datetime) -> datetime:
            fault.done = undo()
            return at

        fault = ActiveFault(record.fault_id, meter_id, spec, record.since, clear, None, record, done)
        return fault

    def _swap(self, first: str, second: str) -> tuple[Callable[[], str], str]:
        """Swap the two meters' addresses; returns the undoing (which says what it did) and what was done."""
        one, other = self.meters[first], self.meters[second]
        if one.protocol == "mbus":
            bus = self._buses[one.config.transport]

            def swap() -> None:
                bus.swap_primary_addresses(self._slaves[first].identification, self._slaves[second].identification)
        else:
            slot, other_slot = self._units[first], self._units[second]

            def swap() -> None:
                slot.source, other_slot.source = other_slot.source, slot.source
                one.last_request, other.last_request = other.last_request, one.last_request

        def said() -> str:
            return f"{first} answers at {self._address(first)} and {second} at {self._address(second)}"

        def undo() -> str:
            swap()
            self._place(first)
            self._place(second)
            return f"swapped back: {said()}"

        swap()
        self._place(first)
        self._place(second)
        return undo, f"addresses swapped: {said()}"

    def _exchange(self, meter_id: str, spec: FaultSpec, since: datetime) -> tuple[Callable[[], str], str]:
        """Put a new meter in ``meter_id``'s place; returns the undoing and what was done."""
        meter = self.meters[meter_id]
        fitted = ExchangedMeter(self._models[meter_id], since, spec.volume_m3 or 0.0)
        kept = (meter.last_request, meter.register, meter.fault_address)
        if meter.protocol == "mbus":
            bus = self._buses[meter.config.transport]
            old = self._slaves[meter_id]
            identification = spec.identification or ""
            new = MBusWaterMeter(fitted, 0, identification, manufacturer=meter.config.manufacturer)
            bus.exchange(old.identification, new)
            self._slaves[meter_id] = new
            meter.last_request = partial(getattr, new, "last_request")
            meter.fault_address = new.fault_address
            who, its = f"identification {identification}", f"identification {old.identification}"

            def put_back() -> None:
                bus.exchange(new.identification, old)
                self._slaves[meter_id] = old
        else:
            slot = self._units[meter_id]
            previous = slot.source
            assert isinstance(previous, ModelledMeter)
            serial = spec.serial_number or ""
            slot.source = ModelledMeter(previous.unit_id, previous.profile, fitted, serial_number=serial)
            who, its = f"serial number {serial}", f"serial number {previous.serial_number}"

            def put_back() -> None:
                slot.source = previous

        meter.register = lambda at: f"{fitted.volume_m3(at):.3f} m3"
        self._place(meter_id)
        start = f"{spec.volume_m3 or 0.0:g}"

        def undo() -> str:
            put_back()
            meter.last_request, meter.register, meter.fault_address = kept
            self._place(meter_id)
            return f"the old meter, {its}, back at {self._address(meter_id)}, its register as if never taken off"

        done = (
            f"exchanged: the meter with {who} answers at {self._address(meter_id)} in place of the one with "
            f"{its}, its register from {start} m3 at {utc_iso(since)}"
        )
        return undo, done

    def _address(self, meter_id: str) -> str:
        """Where the meter in ``meter_id``'s place answers now, in words."""
        meter = self.meters[meter_id]
        transport = meter.config.transport
        if meter.protocol == "mbus":
            return f"primary address {self._slaves[meter_id].primary_address} of {transport}"
        return f"unit {self._unit_of(meter_id)} of {transport}"

    def _unit_of(self, meter_id: str) -> int:
        """The unit id the meter ``meter_id`` answers at: the slot it stands in now."""
        model = self._models[meter_id]
        for other, slot in self._units.items():
            source = slot.source
            if isinstance(source, ModelledMeter) and _model_of(source) is model:
                return self.meters[other].fault_address
        return self.meters[meter_id].fault_address

    def _place(self, meter_id: str) -> None:
        """The meter's ``where`` (the live table's), after a technician's work moved it."""
        meter = self.meters[meter_id]
        transport = meter.config.transport
        if meter.protocol == "mbus":
            slave = self._slaves[meter_id]
            at = f"primary {slave.primary_address} secondary {slave.identification}"
            meter.where = f"{self.where[transport]} {at}"
        else:
            meter.where = f"{self.where[transport]} unit {self._unit_of(meter_id)}"

    def _reserve_counter(self, meter_id: str, counter: int) -> int:
        """A mode 7 meter is about to send ``counter``, past its reservation: reserve
        :data:`COUNTER_RESERVE` more and write it to the state file before it goes out (without a
        state file, the counter's clock floor alone holds it up across a restart)."""
        reserved = min(counter + COUNTER_RESERVE, MESSAGE_COUNTER_MODULUS - 1)
        with self._lock:
            self._counters[meter_id] = reserved
            if self.state_path is None:
                return reserved
            try:
                self._save()
            except OSError as error:  # sent all the same: a meter does not stop for its gateway's sake
                log.warning("%s: message counter %s not kept: %s", meter_id, counter, error)
        return reserved

    def _save(self) -> None:
        """Write every fault's record to the state file (if any). Call with the lock held."""
        if self.state_path is None:
            return
        try:
            records = list(self._records.values())
            save_state(
                self.state_path, self.config.seed, self.config.installed, records, self.config.step_s, self._counters
            )
        except OSError as error:
            detail = f"state file {self.state_path}: {error.strerror}: the faults will not outlive a restart"
            raise OSError(error.errno, detail) from None

    def clear(self, fault_id: int | None = None, meter_id: str | None = None) -> list[ActiveFault]:
        """Clear one fault by id, or every fault of a meter; returns what was cleared."""
        now = self.clock()
        with self._lock:
            chosen = [
                f for f in self._faults.values()
                if (fault_id is None or f.fault_id == fault_id) and (meter_id is None or f.involves(meter_id))
            ]  # fmt: skip
            for f in chosen:
                ended = f.clear(now)
                if f.until is None or f.until > now:  # what is answered: a cleared fault shows its end
                    f.until = ended or now
                if f.record is not None:
                    f.record.cleared = now
                del self._faults[f.fault_id]
            if chosen:
                self._save()
            return chosen

    def active_faults(self) -> list[ActiveFault]:
        now = self.clock()
        with self._lock:
            return [f for f in self._faults.values() if f.until is None or f.until > now]

    # ---- state ----------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One row per meter for the live table and ``GET /meters``.

        A meter that cannot be read shows the error in its row: the live table calls this every
        second, and one broken meter must not take the rig (every other meter) down with it.
        """
        now = self.clock()
        active = self.active_faults()
        out = []
        for meter_id, meter in self.meters.items():
            try:
                reading = self._reading(meter, now)
            except Exception as error:
                log.debug("meter %s cannot be read", meter_id, exc_info=True)
                reading = {"register": f"error: {error}", "flow_m3h": None, "alarms": []}
            last = meter.last_request()
            out.append({
                "meter": meter_id,
                "kind": meter.config.kind,
                "protocol": meter.protocol,
                "where": meter.where,
                **reading,
                "last_request": None if last is None else utc_iso(last),
                "last_request_age_s": None if last is None else round((now - last).total_seconds(), 1),
                "faults": [f.spec.kind for f in active if f.involves(meter_id)],
            })  # fmt: skip
        return out

    @staticmethod
    def _reading(meter: RigMeter, now: datetime) -> dict[str, Any]:
        reading = meter.model.read(now)
        return {
            "register": meter.register(now),
            "flow_m3h": round(reading.flow_m3h, 3),
            "alarms": sorted(reading.alarms),
        }


def _model_of(source: ModelledMeter) -> object:
    """The meter model behind a Modbus meter (an exchanged meter's: the connection's)."""
    meter = source.meter
    return meter.meter if isinstance(meter, ExchangedMeter) else meter
