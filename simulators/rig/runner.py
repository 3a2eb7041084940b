"""The running rig: every configured meter on its transport, their state, and faults coming and going.

One process: the Modbus TCP servers run on the asyncio loop (pymodbus), each behind a
:class:`~simulators.tcp_fault_proxy.ModbusTcpFaultProxy` on the configured port so wire faults can
reach them; the serial transports (Modbus RTU, M-Bus, the wM-Bus receiver) each run on their own
pty thread. Every transport has one :class:`~simulators.rig.faults.LivePlan`; a meter's wire faults
are rules for its address there (Modbus unit id; on the M-Bus and the wM-Bus its identification,
which, unlike an M-Bus primary address, is the meter's alone and does not change).

A technician's work at the meters (``swap_address``, ``exchange``: :mod:`simulators.rig.faults`) is
injected and cleared like a fault; :class:`~simulators.rig.meter_work.MeterWork` checks it and does
it on the transports. Work with a ``duration_s`` is undone at its end as a clear undoes it: by the
first of the rig's checks every :data:`WORK_CHECK_S` (on its loop) and its answers (``GET /faults``,
``GET /meters``, an inject or a clear) to come after it. A gateway's polls meanwhile go to the
transports alone, so they see the work undone within :data:`WORK_CHECK_S` of its end.

Given a state file (:mod:`simulators.rig.state`), the rig keeps every fault it applies there and
replays them at start-up: a restarted rig's registers read what they would have without the restart,
and a fault over by itself before it, not cleared, is answered by its clear as over, whatever its kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
from simulators.modbus_unit import RegisterSource
from simulators.modelled_meter import ModelledMeter
from simulators.rig.config import MeterConfig, RigConfig, TransportConfig, serial_number
from simulators.rig.faults import (
    LivePlan,
    end_meter_fault,
    inject_meter_fault,
    meter_fault,
    parse_fault,
    wire_rule,
)
from simulators.rig.meter_work import MeterWork
from simulators.rig.meters import PulseCounter, Watched
from simulators.rig.running import ActiveFault, RigMeter
from simulators.rig.state import FaultRecord, load_state_and_counters, save_state
from simulators.serial_line import LineSettings
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wmbus_meter import MESSAGE_COUNTER_MODULUS, WMBusMeter
from simulators.wmbus_receiver import WMBusReceiverSimulator

log = logging.getLogger(__name__)
#: Message counters a mode 7 radio meter reserves at a time, written to the state file before it
#: sends the first: one write per 256 telegrams (every 68 min at the rig's 16 s).
COUNTER_RESERVE = 256

#: How often the running rig looks for a technician's work whose ``duration_s`` is over, to undo it
WORK_CHECK_S = 0.1


class UnknownMeterError(KeyError):
    pass


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
        self._models = self._build_models()
        self._work = MeterWork(self.meters, self._models, self.where)  # swaps and exchanges
        self._work_check: asyncio.Task[None] | None = None  # undoes work whose duration_s is over

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

    def _modbus_unit(self, m: MeterConfig, lock: threading.Lock) -> tuple[Watched, Callable[[datetime], str]]:
        """``m``'s unit id's slot (``lock``: its transport's slots', see :class:`Watched`) and its register in words."""
        model = self._models[m.meter_id]
        assert m.address is not None
        source: RegisterSource
        if m.kind == "pulse_counter":
            assert isinstance(model, MeterModel)
            counter = PulseCounter(m.address, model, m.litres_per_pulse, self.config.installed)
            source = counter
            return Watched(source, lock=lock), lambda at: f"{counter.pulses(at)} pulses"
        profile = load_profile("electromagnetic_flow_meter" if m.kind == "dma_inlet" else "smart_water_meter")
        source = ModelledMeter(m.address, profile, model, serial_number=serial_number(m) or "")
        return Watched(source, lock=lock), lambda at: f"{model.read(at).volume_m3:.3f} m3"

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
                if not (record.spec.is_wire or record.spec.is_work) or record.cleared is not None:
                    continue
                end = _end(record)
                if end is not None and end <= now:
                    self._over_before_start(record, end)
                    continue
                try:
                    if record.spec.is_work:  # checked as when injected: the rig file may have changed since
                        in_force = [f for f in self._faults.values() if not f.over]
                        self._work.check(record.meter_id, record.spec, record.fault_id, in_force)
                    self._apply(record)
                except ValueError as error:  # work on a meter the rig file no longer has as it was
                    log.warning("fault %s of %s not done again: %s", record.fault_id, record.meter_id, error)
                    record.cleared = now
            self._save()
        self._work_check = asyncio.create_task(self._undo_work_when_over())

    def _over_before_start(self, record: FaultRecord, end: datetime) -> None:
        """Know ``record``'s wire fault or work, over by itself at ``end`` before the rig started and
        not cleared, as a water fault over is known (its history replayed): its clear answers it as
        over (:attr:`ActiveFault.over`), with the ``done`` of the work's undoing, as the rig that ran
        it would. Nothing is replayed: a wire rule past its end acts on nothing, and work over was
        undone at its end, its meters where they were. Before, it was left out at start-up: its
        clear by id was ``404: no fault 7``, its meter's ``[]``. Call with the lock held."""
        done = self._work.undone(record.meter_id, record.spec) if record.spec.is_work else ""
        fault = ActiveFault(
            record.fault_id, record.meter_id, record.spec, record.since, lambda at: end, end, record, done, over=True
        )
        self._faults[fault.fault_id] = fault

    async def _undo_work_when_over(self) -> None:
        """Every :data:`WORK_CHECK_S`, undo the work whose ``duration_s`` is over (the gateway's polls
        reach the transports, not the rig: nothing else would)."""
        while True:
            await asyncio.sleep(WORK_CHECK_S)
            with self._lock:
                self._undo_work_over(self.clock())

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
            lock = threading.Lock()  # the transport's slots': a swap under it is one step for a request
            units = {m.meter_id: self._modbus_unit(m, lock) for m in members}
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
                self._work.add_unit(m.meter_id, unit)
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
            self._work.add_bus(t.name, bus, slaves)
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
        if self._work_check is not None:
            self._work_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._work_check
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
            self._undo_work_over(self.clock())  # its meters free for the next
            fault_id = next(self._ids)
            if spec.is_work:
                in_force = [f for f in self._faults.values() if not f.over]
                spec = self._work.check(meter_id, spec, fault_id, in_force)
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

    # ---- a technician's work at the meters (simulators.rig.meter_work) -------------------------

    def _do_work(self, record: FaultRecord) -> ActiveFault:
        """Do ``record``'s work on the transports; the fault's clear puts things back. Call with the lock held."""
        undo, done = self._work.do(record.meter_id, record.spec, record.since)

        def clear(at: datetime) -> datetime:
            fault.done = undo()
            return at

        until = _end(record)
        fault = ActiveFault(record.fault_id, record.meter_id, record.spec, record.since, clear, until, record, done)
        return fault

    def _undo_work_over(self, now: datetime) -> None:
        """Undo the work whose ``duration_s`` is over by ``now``, as a clear undoes it, once. The fault
        and its record are left as a timed wire or water fault's are (not cleared: it ended at its
        ``until``), for a clear to answer it as over (:attr:`ActiveFault.over`). Before, it was
        dropped: its clear by id was ``404: no fault 7``, the meter's ``[]``, where a wire fault's
        answered it. Call with the lock held."""
        for f in self._faults.values():
            if f.spec.is_work and not f.over and f.until is not None and f.until <= now:
                f.clear(f.until)
                f.over = True
                log.info("fault %s of %s over at %s: %s", f.fault_id, f.meter_id, utc_iso(f.until), f.done)

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
            self._undo_work_over(now)  # over already: undone at its until, not now
            chosen = [
                f for f in self._faults.values()
                if (fault_id is None or f.fault_id == fault_id) and (meter_id is None or f.involves(meter_id))
            ]  # fmt: skip
            for f in chosen:
                ended = None if f.over else f.clear(now)  # (work over: undone once, at its until)
                if f.until is None or f.until > now:  # what is answered: a cleared fault shows its end
                    f.until = ended or now
                    cleared = now
                else:  # ended by itself, whatever its kind: answered with its until and a note saying so
                    f.over = True
                    cleared = f.until  # kept as its end (before, the clear's time: as if the clear ended it)
                if f.record is not None:
                    f.record.cleared = cleared
                del self._faults[f.fault_id]
            if chosen:
                self._save()
            return chosen

    def active_faults(self) -> list[ActiveFault]:
        now = self.clock()
        with self._lock:
            self._undo_work_over(now)
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


def _end(record: FaultRecord) -> datetime | None:
    """When ``record``'s fault ends by itself: its ``duration_s`` after its ``since`` (a water fault's
    as the meter applies it may be later: the next step), or None for none."""
    duration = record.spec.duration_s
    return None if duration is None else record.since + timedelta(seconds=duration)
