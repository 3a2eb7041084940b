"""The rig's configuration: one TOML file (see ``simulators/examples/rig.toml``), validated at start.

Every error names the file, the line and the field, and unknown keys are errors, through the same
reader the gateway's configuration uses (:mod:`aquami.config.reader`)::

    rig.toml:31: meter[2].litres_per_pulse: 0.0 must be at least 0.001

A file has ``[rig]`` (seed, installation time, the control endpoint, the meter models' ``step_s``),
``[[transport]]`` (each a name and a protocol: ``modbus_tcp``, ``modbus_rtu``, ``mbus``, ``wmbus``) and
``[[meter]]`` (each an id, a kind and the transport it sits on); the faults the rig applies are kept
in a state file beside it (:mod:`simulators.rig.state`), so a restarted rig reads on where it was.
Kinds and the protocols they speak:

- ``smart_water_meter``: Modbus (TCP or RTU), profile ``smart_water_meter``; its ``serial_number``
  (decimal digits, its profile's register) is derived from its id unless given (a meter exchanged:
  give another; two unit ids swapped: swap their ``address``, the serial numbers stay with the meters);
  ``"0"`` (or all ones, ``"4294967295"``) is a serial number never set, as many meters leave the
  factory: served as such, to rehearse what the gateway does with one (:func:`serial_never_set`);
- ``pulse_counter``: a mechanical meter's pulse output on a pulse-counter module, Modbus profile
  ``pulse_counter`` (``litres_per_pulse``);
- ``dma_inlet``: a district's bulk inlet meter, Modbus profile ``electromagnetic_flow_meter``; its flow
  is what the ``customers`` (other meters of the rig) really draw, plus background ``leakage_m3h``;
  a ``serial_number`` as the smart water meter's;
- ``mbus_water``: a wired M-Bus water meter (primary ``address``, ``secondary`` identification);
- ``wmbus_oms``: a wireless M-Bus OMS water meter (``secondary`` identification, AES ``key``,
  ``security_mode`` 5, the default, or 7: OMS security profile B, an AFL with a message counter and
  AES-CMAC, session keys derived from ``key`` by KDF-A).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aquami.config import toml_file
from aquami.config.reader import ConfigError, Document, Table
from aquami.config.toml_lines import LineIndex
from aquami.contracts.reads import is_identifier
from firmware_protocols.modbus.profile import serial_unset, serial_value
from firmware_protocols.modbus.types import ValueType
from firmware_protocols.wmbus.keys import aes_key
from simulators.ground_truth import iso_utc, parse_iso_utc
from simulators.meter_model import EARLIEST_INSTALLED
from simulators.modbus_unit import serial_number_for
from simulators.rig.faults import FaultSpec, parse_fault
from simulators.wmbus_meter import SECURITY_MODES

__all__ = ["ConfigError", "MeterConfig", "RigConfig", "TransportConfig", "load_rig", "parse_rig_text"]

PROTOCOLS = ("modbus_tcp", "modbus_rtu", "mbus", "wmbus")
KIND_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "smart_water_meter": ("modbus_tcp", "modbus_rtu"),
    "pulse_counter": ("modbus_tcp", "modbus_rtu"),
    "dma_inlet": ("modbus_tcp", "modbus_rtu"),
    "mbus_water": ("mbus",),
    "wmbus_oms": ("wmbus",),
}
#: The kinds whose profile reads a serial number (a pulse counter is a counter, not a meter: none)
SERIAL_KINDS = ("smart_water_meter", "dma_inlet")
#: Their profiles' serial number register (smart_water_meter, electromagnetic_flow_meter)
SERIAL_TYPE: ValueType = "u32"
DEFAULT_BAUD = {"modbus_rtu": 9600, "mbus": 2400, "wmbus": 57600}
#: When the meters were installed unless ``installed`` says: a fixed date, so a rig restarted (on any
#: day) reads on where it left off; one relative to the start moved every register back at a restart.
DEFAULT_INSTALLED = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TransportConfig:
    name: str
    protocol: str
    host: str = "127.0.0.1"
    port: int = 0  # Modbus TCP; 0 picks a free port
    baudrate: int = 9600


@dataclass(frozen=True)
class MeterConfig:
    meter_id: str
    kind: str
    transport: str
    address: int | None = None  # Modbus unit id or M-Bus primary address
    secondary: str | None = None  # M-Bus / wM-Bus identification (8 digits)
    serial_number: str | None = None  # a Modbus meter's (not a pulse counter's); None: derived from its id
    manufacturer: str = "AQM"
    initial_m3: float = 0.0
    litres_per_pulse: float = 10.0
    customers: tuple[str, ...] = ()
    leakage_m3h: float = 0.05
    key: bytes | None = None
    interval_s: float = 16.0
    security_mode: int = 5  # wmbus_oms: OMS security mode 5 or 7
    faults: tuple[FaultSpec, ...] = ()


@dataclass(frozen=True)
class RigConfig:
    seed: int
    installed: datetime
    control_host: str
    control_port: int
    transports: tuple[TransportConfig, ...]
    meters: tuple[MeterConfig, ...] = field(default=())
    step_s: int = 60  # the meter models' step: a fault in the water starts at the next one

    def transport(self, name: str) -> TransportConfig:
        return next(t for t in self.transports if t.name == name)


def _gateway_identifier(t: Table, key: str, what: str) -> str:
    """A name the rig's gateway file (``--gateway-config``) carries: it must be one the gateway takes,
    and the readings contract (:func:`aquami.contracts.reads.is_identifier`). Before, the rig took any
    text: it served and printed a meter ``Zähler 1``, and the gateway refused the file written for it
    (and a technician's copy of the id)."""
    value = t.text(key)
    if not is_identifier(value):
        raise t.error(
            key,
            f"{value!r} is not a {what} a gateway takes (letters, digits and . _ : -, "
            "the first a letter or digit, at most 64)",
        )
    return str(value)


def _transport(t: Table) -> TransportConfig:
    name = _gateway_identifier(t, "name", "bus name")  # the transport's bus in the gateway file
    protocol = t.choice("protocol", PROTOCOLS)
    host = t.text("host", "127.0.0.1") if protocol == "modbus_tcp" else "127.0.0.1"
    port = t.integer("port", 0, low=0, high=65535) if protocol == "modbus_tcp" else 0
    baudrate = t.integer("baudrate", DEFAULT_BAUD.get(protocol, 9600), low=300, high=921600)
    if protocol == "modbus_tcp" and t.has("baudrate"):
        raise t.error("baudrate", "a Modbus TCP transport has no baud rate")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise t.error("host", f"{host!r}: the rig listens on loopback only")
    t.no_unknown_keys()
    return TransportConfig(name, protocol, host, port, baudrate)


def _identification(t: Table, key: str) -> str:
    value = t.text(key)
    if len(value) != 8 or not (value.isascii() and value.isdigit()):  # "١٢٣٤٥٦٧٨" is digits too, but no BCD
        raise t.error(key, f"{value!r}: 8 decimal digits 0-9")
    return str(value)


class RigTable(Table):
    """The gateway's :class:`Table`, with the two array readers the rig needs."""

    def strings(self, key: str) -> tuple[str, ...]:
        self._read.add(key)
        items = self.values.get(key, [])
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise self.error(key, "expected an array of strings")
        return tuple(items)

    def items(self, key: str) -> list[Any]:
        self._read.add(key)
        items = self.values.get(key, [])
        if not isinstance(items, list):
            raise self.error(key, "expected an array")
        return items


def _meter(t: RigTable, transports: dict[str, TransportConfig]) -> MeterConfig:
    meter_id = _gateway_identifier(t, "id", "meter id")
    kind = t.choice("kind", tuple(KIND_PROTOCOLS))
    transport = t.text("transport")
    if transport not in transports:
        raise t.error("transport", f"{transport!r} is no [[transport]] name ({', '.join(transports) or 'none'})")
    protocol = transports[transport].protocol
    if protocol not in KIND_PROTOCOLS[kind]:
        raise t.error("transport", f"a {kind} meter speaks {' or '.join(KIND_PROTOCOLS[kind])}, not {protocol}")
    values: dict[str, Any] = {"initial_m3": t.number("initial_m3", 0.0, low=0.0, high=99_999.0)}
    if protocol.startswith("modbus"):
        values["address"] = t.integer("address", low=1, high=247)
    elif protocol == "mbus":
        values["address"] = t.integer("address", low=0, high=250)
    if kind in ("mbus_water", "wmbus_oms"):
        values["secondary"] = _identification(t, "secondary")
        manufacturer = t.text("manufacturer", "AQM")
        if (
            len(manufacturer) != 3
            or not manufacturer.isascii()
            or not manufacturer.isalpha()
            or not manufacturer.isupper()
        ):
            raise t.error("manufacturer", f"{manufacturer!r}: three letters A-Z (EN 13757-3 clause 5.6)")
        values["manufacturer"] = manufacturer
    if kind in SERIAL_KINDS and t.has("serial_number"):
        try:
            values["serial_number"] = str(serial_value(t.text("serial_number"), SERIAL_TYPE))
        except ValueError as error:
            raise t.error("serial_number", str(error)) from None
    if kind == "pulse_counter":
        values["litres_per_pulse"] = t.number("litres_per_pulse", low=0.001)
    if kind == "dma_inlet":
        values["customers"] = customers = t.strings("customers")
        twice = sorted({c for c in customers if customers.count(c) > 1})
        if twice:
            raise t.error("customers", f"{twice[0]!r} is listed more than once (the inlet would count its water twice)")
        values["leakage_m3h"] = t.number("leakage_m3h", 0.05, low=0.0)
    if kind == "wmbus_oms":
        text = t.text("key")
        try:
            values["key"] = aes_key(text)
        except ValueError as error:
            raise t.error("key", str(error)) from None
        values["interval_s"] = t.number("interval_s", 16.0, low=0.1, high=86_400.0)
        mode = t.integer("security_mode", 5)
        if mode not in SECURITY_MODES:
            raise t.error(
                "security_mode",
                f"{mode}: 5 (AES-CBC, OMS security profile A) or 7 (AFL with message counter and AES-CMAC, "
                "KDF-A session keys, profile B)",
            )
        values["security_mode"] = mode
    faults = []
    for index, item in enumerate(t.items("faults")):
        try:
            spec = parse_fault(item, kind)
        except ValueError as error:
            raise t.document.error((*t.path, "faults", index), str(error)) from None
        if spec.is_work:  # a rig file says where each meter is: its address, its identification
            instead = (
                "give the two meters each other's address"
                if spec.kind == "swap_address"
                else (
                    "give the meter another secondary"
                    if kind == "mbus_water"
                    else "give the meter another serial_number"
                )
            )
            raise t.document.error(
                (*t.path, "faults", index),
                f"a {spec.kind} is a technician's work on a running rig (aquami simulate fault); "
                f"in a rig file, {instead}",
            )
        faults.append(spec)
    t.no_unknown_keys()
    return MeterConfig(meter_id, kind, transport, faults=tuple(faults), **values)


def serial_number(meter: MeterConfig) -> str | None:
    """The serial number the rig's Modbus meter serves: its own, else derived from its id; None for
    a kind that has none."""
    if meter.kind not in SERIAL_KINDS:
        return None
    return meter.serial_number or serial_number_for(meter.meter_id)


def serial_never_set(serial: str) -> bool:
    """Whether the rig's meter serving ``serial`` has a serial number never set: its register reads 0
    or all ones (firmware_protocols.modbus.profile.serial_unset), as every such meter's does. The rig
    serves it, to rehearse one; it is no identity, so no other meter's alike."""
    return serial_unset(int(serial), SERIAL_TYPE)


def parse_rig(
    document: dict[str, Any], source: str = "rig.toml", lines: LineIndex | None = None, now: datetime | None = None
) -> RigConfig:
    doc = Document(source, lines)
    top = Table(doc, (), document)
    rig = top.table("rig")
    seed = rig.integer("seed", 7, low=0)  # numpy seeds its streams from non-negative integers
    start = now or datetime.now(UTC)
    installed_text = rig.text("installed", None)
    if installed_text is None:
        installed = DEFAULT_INSTALLED
        if installed > start:
            raise rig.error("installed", f"the default, {iso_utc(installed)}, is in the future: set it")
    else:
        try:
            installed = parse_iso_utc(installed_text)  # in a stored time's shape and words (aquami.stored_times)
        except ValueError as error:
            raise rig.error("installed", str(error)) from None
        if installed > start:
            raise rig.error("installed", f"{installed_text}: in the future; meters must be installed to be read")
        if installed < EARLIEST_INSTALLED:  # refused here, so --check refuses it too, not the run
            raise rig.error(
                "installed",
                f"{installed_text}: before {iso_utc(EARLIEST_INSTALLED)}, the earliest the simulated meters start from",
            )
    control = rig.text("control", "127.0.0.1:8470")
    host, _, port_text = control.rpartition(":")
    port_ok = port_text.isascii() and port_text.isdigit() and 0 <= int(port_text) <= 65535
    if host not in ("127.0.0.1", "localhost") or not port_ok:
        raise rig.error("control", f"{control!r}: 127.0.0.1:PORT (the fault endpoint listens on loopback only)")
    step_s = rig.integer("step_s", 60, low=1, high=3600)
    if 3600 % step_s:  # the consumption model's steps never span an hour boundary
        raise rig.error("step_s", f"{step_s} does not divide an hour (3600 s), as 1, 10 or 60 do")
    rig.no_unknown_keys()

    transports: dict[str, TransportConfig] = {}
    for t in top.tables("transport"):
        transport = _transport(t)
        if transport.name in transports:
            raise t.error("name", f"{transport.name!r} is used by another transport")
        transports[transport.name] = transport
    meters: list[MeterConfig] = []
    seen_addresses: dict[tuple[str, str, object], str] = {}
    for table in top.tables("meter"):
        t = RigTable(table.document, table.path, table.values)
        meter = _meter(t, transports)
        if any(m.meter_id == meter.meter_id for m in meters):
            raise t.error("id", f"{meter.meter_id!r} is used by another meter")
        for key, value in (
            ("address", meter.address),
            ("secondary", meter.secondary),
            ("serial_number", serial_number(meter)),
        ):
            if value is None or (key == "address" and meter.kind == "mbus_water" and value == 0):
                continue
            if key == "serial_number" and serial_never_set(str(value)):  # every such meter's alike
                continue
            other = seen_addresses.setdefault((meter.transport, key, value), meter.meter_id)
            if other != meter.meter_id:
                raise t.error(key, f"{value!r} is {other}'s on transport {meter.transport!r}")
        meters.append(meter)
    by_id = {m.meter_id: m for m in meters}
    for index, meter in enumerate(meters):
        for customer in meter.customers:
            if customer not in by_id or by_id[customer].kind == "dma_inlet":
                raise doc.error(("meter", index, "customers"), f"{customer!r} is no customer meter of this rig")
    if not meters:
        raise doc.error(("meter",), "no [[meter]]: a rig needs at least one meter")
    top.no_unknown_keys()
    return RigConfig(seed, installed, host, int(port_text), tuple(transports.values()), tuple(meters), step_s)


def parse_rig_text(text: str, source: str = "rig.toml", now: datetime | None = None) -> RigConfig:
    text = toml_file.without_bom(text)
    return parse_rig(toml_file.parse(text, source), source, LineIndex(text), now)


def load_rig(path: str | Path, now: datetime | None = None) -> RigConfig:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse_rig_text(toml_file.decode(data, str(path)), str(path), now)
