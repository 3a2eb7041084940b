"""The gateway's configuration: one TOML file, validated at start, errors naming the line and field.

A file looks like ``gateway/examples/gateway.toml``: ``gateway_id``, ``[mqtt]``, ``[spool]``,
``[health]``, ``[[buses]]`` and ``[[meters]]`` (each naming its ``bus``; meters may also be nested
as ``[[buses.meters]]``). Relative paths (spool, TLS files) are relative to the file's directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict

from aquami.config import toml_file
from aquami.config.reader import ConfigError, Document, Table
from aquami.config.toml_lines import LineIndex
from aquami.contracts.reads import ALARMS, is_identifier
from aquami.mqtt import MqttEndpoint
from firmware_protocols.modbus import MeterProfile, load_profile
from firmware_protocols.modbus.profile import ProfileError, serial_unset, serial_value
from firmware_protocols.wmbus.keys import aes_key
from gateway.mqtt_version import CONNACK_WAIT_S

__all__ = [
    "BusConfig",
    "ConfigError",
    "GatewayConfig",
    "HealthOptions",
    "MBusBusConfig",
    "MeterConfig",
    "ModbusRtuBusConfig",
    "ModbusTcpBusConfig",
    "MqttOptions",
    "SerialBusConfig",
    "SpoolOptions",
    "WMBusBusConfig",
    "load_config",
    "parse_config",
    "parse_config_text",
]


@dataclass(frozen=True)
class MeterConfig:
    meter_id: str
    unit_id: int
    profile: str = "smart_water_meter"
    parameters: dict[str, Any] = field(default_factory=dict)
    poll_interval_s: float | None = None  # None: the bus's
    secondary_address: str | None = None  # M-Bus: 8 identification digits (then unit_id is FDh)
    #: wired M-Bus, a meter on a primary address: the 8-digit identification its answers must carry; None:
    #: the one its first answer carried is expected from then on (gateway.mbus_identity)
    identification: str | None = None
    #: Modbus, a meter whose profile has a ``serial_number`` field: the serial number its answers must
    #: carry (decimal digits, no leading zeros); None: its first answer's (gateway.modbus_identity)
    serial_number: str | None = None
    wmbus_id: str | None = None  # wireless M-Bus: the meter's 8-digit identification
    key: bytes | None = None  # wireless M-Bus: its AES-128 key, if its telegrams are encrypted
    manufacturer: str | None = None  # wireless M-Bus: its 3-letter FLAG code; given, telegrams must carry it
    # (wired and wireless) M-Bus: the alarm each bit of its error flags record (VIF FDh 17h) stands for,
    # bit 0 first, "" for a bit that is none; empty: the record is not read (gateway.mbus)
    error_flags: tuple[str, ...] = ()

    @property
    def address(self) -> str | int:
        """How the bus knows this meter (the ``source.address`` of its readings)."""
        return self.wmbus_id or self.secondary_address or self.unit_id


@dataclass(frozen=True)
class ModbusTcpBusConfig:
    name: str
    host: str
    port: int
    meters: tuple[MeterConfig, ...]
    poll_interval_s: float = 60.0
    timeout_s: float = 2.0
    retries: int = 2
    retry_backoff_s: float = 0.2
    jitter: float = 0.1  # each meter polls up to this fraction of its interval before each UTC boundary
    protocol: ClassVar[str] = "modbus-tcp"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class SerialFraming(TypedDict):
    """A serial port's settings, as pyserial (and pymodbus) name them."""

    baudrate: int
    parity: Literal["N", "E", "O"]
    stopbits: int
    bytesize: int


@dataclass(frozen=True)
class SerialBusConfig:
    """A bus on a serial port: the port, its framing and how the bus is polled.

    The defaults are Modbus RTU's; each protocol's class declares again only the defaults it changes.
    """

    name: str
    device: str
    meters: tuple[MeterConfig, ...]
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "E"
    stopbits: int = 1
    bytesize: int = 8
    poll_interval_s: float = 60.0
    timeout_s: float = 1.0
    retries: int = 2
    retry_backoff_s: float = 0.2
    jitter: float = 0.1  # each meter polls up to this fraction of its interval before each UTC boundary
    protocol: ClassVar[str]

    @property
    def address(self) -> str:
        return self.device

    @property
    def framing(self) -> SerialFraming:
        return {"baudrate": self.baudrate, "parity": self.parity, "stopbits": self.stopbits, "bytesize": self.bytesize}


@dataclass(frozen=True)
class ModbusRtuBusConfig(SerialBusConfig):
    echo: bool = False  # the RS-485 adapter hears its own request: it is read back before the answer
    protocol: ClassVar[str] = "modbus-rtu"


def mbus_answer_timeout_s(baudrate: int) -> float:
    """EN 13757-2 clause 5.4: a slave starts its answer within 330 bit times + 50 ms."""
    return 330 / baudrate + 0.05


def mbus_timeout_s(baudrate: int, reply_bytes: int = 261, answer_timeout_s: float = 0.0) -> float:
    """The answer window (by default :func:`mbus_answer_timeout_s`); then the longest frame (261
    bytes of 11 bits) has to arrive."""
    return (answer_timeout_s or mbus_answer_timeout_s(baudrate)) + reply_bytes * 11 / baudrate


@dataclass(frozen=True)
class MBusBusConfig(SerialBusConfig):
    baudrate: int = 2400
    poll_interval_s: float = 900.0
    timeout_s: float = 0.0  # 0: from the baud rate and the answer window (:func:`mbus_timeout_s`)
    #: how long after a request (or its echo) the answer's first byte is waited for, and in a
    #: secondary-address search how long a second slave's answer may still start; 0: the standard's
    #: 330 bit times + 50 ms (:func:`mbus_answer_timeout_s`). Wider for a converter or a line (a
    #: radio or IP bridge) that delays answers; every silent request then takes this long.
    answer_timeout_s: float = 0.0
    echo: bool = False  # the level converter hears its own request: it is read back before the answer
    protocol: ClassVar[str] = "mbus"

    def __post_init__(self) -> None:
        if not self.answer_timeout_s:
            object.__setattr__(self, "answer_timeout_s", mbus_answer_timeout_s(self.baudrate))
        if not self.timeout_s:
            object.__setattr__(
                self, "timeout_s", round(mbus_timeout_s(self.baudrate, answer_timeout_s=self.answer_timeout_s), 3)
            )


@dataclass(frozen=True)
class WMBusBusConfig(SerialBusConfig):
    """A wireless M-Bus receiver (an iM871A-style stick) on a serial port: listened to, not polled.

    Each meter is expected to be heard at least every ``poll_interval_s`` (its send interval);
    ``offline_after`` intervals without a telegram make it offline. The same telegram heard again
    within ``duplicate_window_s`` (from a repeater, or a second receiver) is dropped.
    """

    baudrate: int = 57600
    parity: Literal["N", "E", "O"] = "N"
    poll_interval_s: float = 300.0
    retries: int = 0
    retry_backoff_s: float = 0.0
    jitter: float = 0.0
    duplicate_window_s: float = 60.0
    #: the stick attaches a CRC-16 to each message (set it so): a message without one is taken for
    #: noise, and noise can never swallow the telegrams after it
    require_fcs: bool = False
    protocol: ClassVar[str] = "wmbus"


BusConfig = ModbusTcpBusConfig | ModbusRtuBusConfig | MBusBusConfig | WMBusBusConfig
BUS_KINDS: dict[str, type[BusConfig]] = {
    kind.protocol: kind for kind in (ModbusTcpBusConfig, ModbusRtuBusConfig, MBusBusConfig, WMBusBusConfig)
}
MBUS_BAUD_RATES = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)


@dataclass(frozen=True)
class MqttOptions:
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5, falling back to 3.1.1
    qos: int = 1
    keepalive_s: int = 30
    #: A CONNECT unanswered this long (or a keepalive period, if shorter) is given up: see
    #: :data:`gateway.mqtt_version.CONNACK_WAIT_S`. Raise it for a broker slow to accept connections
    #: (an authentication backend under the reconnection storm after a broker restart).
    connack_wait_s: float = CONNACK_WAIT_S
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: The largest packet the broker takes, in bytes, where it does not say: MQTT 5 brokers announce
    #: theirs in CONNACK (the smaller of the two counts), MQTT 3.1.1 brokers just disconnect.
    max_packet_size: int | None = None
    #: Whether the broker may refuse a publish (an ACL, as a deployment's Mosquitto has): in MQTT
    #: 3.1.1 a refused publish is acknowledged all the same, and the gateway warns of it. The demo's
    #: embedded broker refuses nothing, so the warning would only alarm a new user. Not in the
    #: configuration file: a deployment's broker is taken to have an ACL.
    broker_acl: bool = True

    @property
    def tls_files_given(self) -> bool:
        return any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))


@dataclass(frozen=True)
class SpoolOptions:
    max_readings: int = 1_000_000
    policy: Literal["drop_oldest", "stop_polling"] = "drop_oldest"
    #: a damaged spool file: set aside and salvaged into a new one (gateway.spool_salvage), or stop
    on_damage: Literal["set_aside", "stop"] = "set_aside"


@dataclass(frozen=True)
class HealthOptions:
    status_interval_s: float = 60.0
    offline_after: int = 3  # consecutive failed polls before ``meter_offline``


@dataclass(frozen=True)
class GatewayConfig:
    gateway_id: str
    mqtt: MqttEndpoint
    spool_path: Path
    buses: tuple[BusConfig, ...]
    batch_size: int = 500
    window: int = 8
    topic_root: str = "aquami/v1"
    mqtt_options: MqttOptions = MqttOptions()
    spool: SpoolOptions = SpoolOptions()
    health: HealthOptions = HealthOptions()

    @property
    def meters(self) -> list[MeterConfig]:
        return [meter for bus in self.buses for meter in bus.meters]

    def size(self) -> str:
        """Its buses and meters as a person says them: ``1 bus, 3 meters`` (not ``1 buses``)."""
        buses, meters = len(self.buses), len(self.meters)
        return f"{buses:,} {'bus' if buses == 1 else 'buses'}, {meters:,} {'meter' if meters == 1 else 'meters'}"


class _ProfileCache:
    """Profiles loaded once per (name, parameters): 2,000 meters usually share a handful."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, tuple[tuple[str, str], ...]], MeterProfile] = {}

    def get(self, name: str, parameters: dict[str, Any]) -> MeterProfile:
        key = (name, tuple(sorted((k, repr(v)) for k, v in parameters.items())))
        if key not in self._loaded:
            self._loaded[key] = load_profile(name, parameters)
        return self._loaded[key]


def _resolve(base: Path | None, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() or base is None else base / path


def _identifier(table: Table, key: str) -> str:
    value: str = table.text(key)
    if not is_identifier(value):
        raise table.error(key, f"{value!r} is not an identifier (letters, digits and . _ : -, at most 64)")
    return value


def _mqtt(table: Table, base: Path | None) -> tuple[MqttEndpoint, MqttOptions, dict[str, Any]]:
    url = table.text("url")  # its ConfigError as it is: read inside the try, it was named twice
    try:
        endpoint = MqttEndpoint.parse(url)
    except ValueError as error:
        raise table.error("url", str(error)) from error
    username = table.text("username", None)
    password = table.text("password", None)
    if password is not None and username is None and endpoint.username is None:
        raise table.error("password", "a password needs a username")
    if username is not None:
        endpoint = replace(endpoint, username=username, password=password)
    files: dict[str, Path | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        text = table.text(key, None)
        files[key] = None if text is None else _resolve(base, text)
        if files[key] is not None and not files[key].is_file():  # type: ignore[union-attr]
            raise table.error(key, f"no such file: {files[key]}")
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise table.error(
            "cert_file" if files["cert_file"] is None else "key_file",
            "a client certificate needs both cert_file and key_file",
        )
    if any(files.values()) and not endpoint.tls:
        endpoint = replace(endpoint, tls=True)
    qos = table.integer("qos", 1, low=0, high=2)
    if qos == 0:
        raise table.error("qos", "QoS 0 has no PUBACK, and the spool deletes a batch only on PUBACK: use 1 or 2")
    reconnect_min = table.number("reconnect_min_s", 1.0, low=0.01)
    options = MqttOptions(
        protocol=table.choice("protocol", ("auto", "5", "3.1.1"), "auto"),
        qos=qos,
        keepalive_s=table.integer("keepalive_s", 30, low=5, high=65535),
        connack_wait_s=table.number("connack_wait_s", CONNACK_WAIT_S, low=1.0, high=65535.0),
        reconnect_min_s=reconnect_min,
        reconnect_max_s=table.number("reconnect_max_s", max(60.0, reconnect_min), low=reconnect_min),
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        max_packet_size=table.integer("max_packet_size", None, low=1024, high=268_435_460),
    )
    rest = {
        "batch_size": table.integer("batch_size", 500, low=1, high=10_000),
        "window": table.integer("window", 8, low=1, high=1000),
        "topic_root": table.text("topic_root", "aquami/v1"),
    }
    if "#" in rest["topic_root"] or "+" in rest["topic_root"]:
        raise table.error("topic_root", "a topic root may not contain MQTT wildcards")
    table.no_unknown_keys()
    return endpoint, options, rest


def _bus(table: Table) -> tuple[str, str, dict[str, Any]]:
    """A bus's name, protocol and settings (its meters are read separately); the defaults are its class's."""
    name = _identifier(table, "name")
    protocol = table.choice("protocol", tuple(BUS_KINDS))
    kind = BUS_KINDS[protocol]
    default = {f.name: f.default for f in fields(kind)}
    settings: dict[str, Any] = {"name": name}
    if kind is ModbusTcpBusConfig:
        settings["host"] = table.text("host")
        settings["port"] = table.integer("port", 502, low=1, high=65535)
    else:
        settings["device"] = table.text("device")
        settings["baudrate"] = table.integer("baudrate", default["baudrate"], low=300, high=921600)
        settings["parity"] = table.choice("parity", ("N", "E", "O"), default["parity"])
        settings["stopbits"] = table.integer("stopbits", default["stopbits"], low=1, high=2)
        settings["bytesize"] = table.integer("bytesize", default["bytesize"], low=7, high=8)
    if kind is MBusBusConfig and settings["baudrate"] not in MBUS_BAUD_RATES:
        raise table.error("baudrate", f"M-Bus runs at {', '.join(map(str, MBUS_BAUD_RATES))} baud")
    settings["poll_interval_s"] = table.number("poll_interval_s", default["poll_interval_s"], low=0.05)
    if kind in (ModbusRtuBusConfig, MBusBusConfig):
        settings["echo"] = table.flag("echo", False)
    elif table.has("echo"):
        raise table.error("echo", "echo is for M-Bus and Modbus RTU buses (an adapter that hears its own request)")
    if kind is WMBusBusConfig:  # listened to: no timeouts or retries to set
        settings["duplicate_window_s"] = table.number("duplicate_window_s", default["duplicate_window_s"], low=0.0)
        settings["require_fcs"] = table.flag("require_fcs", default["require_fcs"])
        return name, protocol, settings
    # M-Bus's default timeout (0: from the baud rate) cannot be written: a timeout given is at least 0.01 s.
    settings["timeout_s"] = table.number("timeout_s", default["timeout_s"], low=0.01, high=60)
    if kind is MBusBusConfig:
        # its default (0: the standard's 330 bit times + 50 ms) cannot be written either
        settings["answer_timeout_s"] = table.number("answer_timeout_s", default["answer_timeout_s"], low=0.01, high=60)
        if settings["timeout_s"] and settings["answer_timeout_s"] > settings["timeout_s"]:
            raise table.error(
                "answer_timeout_s",
                f"the answer window ({settings['answer_timeout_s']} s) is part of an exchange: "
                f"at most timeout_s ({settings['timeout_s']} s)",
            )
    elif table.has("answer_timeout_s"):
        raise table.error("answer_timeout_s", "answer_timeout_s is for M-Bus buses")
    settings["retries"] = table.integer("retries", default["retries"], low=0, high=10)
    settings["retry_backoff_s"] = table.number("retry_backoff_s", default["retry_backoff_s"], low=0, high=60)
    settings["jitter"] = table.number("jitter", default["jitter"], low=0, high=0.5)
    return name, protocol, settings


def _hex_key(table: Table) -> bytes | None:
    text = table.text("key", None)
    if text is None:
        return None
    try:
        return aes_key(text)
    except ValueError as error:
        raise table.error("key", str(error)) from None


def _flag_code(table: Table) -> str | None:
    """A manufacturer's 3-letter FLAG code, as a telegram's M-field carries it (EN 13757-4:2019
    12.5.5; EN 13757-3:2018 5.6, the codes of EN 62056-21), in upper case."""
    text = table.text("manufacturer", None)
    if text is None:
        return None
    code = text.strip().upper()
    if len(code) != 3 or not all("A" <= c <= "Z" for c in code):
        raise table.error("manufacturer", f'{text!r} is not a manufacturer\'s 3-letter FLAG code (such as "KAM")')
    return code


def _eight_digits(table: Table, key: str) -> str:
    value: str = table.text(key)
    if len(value) != 8 or not value.isdigit():
        raise table.error(key, f"{value!r} is not an 8-digit identification")
    return value


def _serial_number(table: Table, profile: MeterProfile, name: str) -> str:
    """A Modbus meter's ``serial_number``: its digits as the profile's field decodes them (a number:
    ``"0040012345"`` is 40012345, as the register holds it)."""
    field = profile.serial_field
    if field is None:
        raise table.error(
            "serial_number",
            f"profile {name!r} reads no serial number (no field named 'serial_number'): nothing to check it against",
        )
    text: str = table.text("serial_number")
    try:
        value = serial_value(text, field.type)
    except ValueError as error:
        raise table.error("serial_number", str(error)) from None
    if serial_unset(value, field.type):  # every meter never given a serial number answers with it
        raise table.error(
            "serial_number",
            f"{value} is the register of a meter whose serial number was never set (0, or all ones): it "
            "tells no meter from another; take serial_number out, or set the meter's own serial number first",
        )
    return str(value)


def _meter(table: Table, profiles: _ProfileCache, bus: str, protocol: str) -> MeterConfig:
    meter_id = _identifier(table, "meter_id")
    table.text("bus", bus)
    poll_interval = table.number("poll_interval_s", None, low=0.05)
    if protocol in ("modbus-tcp", "modbus-rtu"):
        unit_id = table.integer("unit_id", low=1, high=247)
        profile = table.text("profile", "smart_water_meter")
        parameters = table.raw_table("parameters")
        try:
            loaded = profiles.get(profile, parameters)
        except ProfileError as error:
            raise table.error("profile", str(error)) from error
        from gateway.pulse import is_pulse_counter, max_flow_m3h  # (a module of the gateway's own)

        # a parameter the profile does not use was ignored by it and broke every poll (litres_per_pulse
        # on a meter's own register: an InvalidOperation that killed the poll unseen), or labelled it a pulse source
        usable = loaded.parameters | ({"max_flow_m3h"} if is_pulse_counter(loaded) else set())
        unused = sorted(set(parameters) - usable)
        if unused:
            raise table.error(
                "parameters",
                f"{unused[0]!r} is no parameter of profile {profile!r}"
                + (f" (it takes {', '.join(sorted(usable))})" if usable else " (it takes none)"),
            )
        try:
            max_flow_m3h(parameters)  # a pulse counter's wrap is judged by it: refused here, not at each poll
        except ValueError as error:
            raise table.error("parameters", str(error)) from error
        for f in loaded.fields:
            # the collector refuses a whole batch for one alarm name outside the contract's list
            unknown = sorted(set(f.bits.values()) - set(ALARMS))
            if unknown:
                raise table.error(
                    "profile",
                    f"{profile!r}: field {f.name!r} names alarm(s) {', '.join(map(repr, unknown))}; "
                    f"the reads contract has {', '.join(ALARMS)}",
                )
        serial_number = _serial_number(table, loaded, profile) if table.has("serial_number") else None
        table.no_unknown_keys()
        return MeterConfig(meter_id, unit_id, profile, parameters, poll_interval, serial_number=serial_number)
    flags = _error_flags(table)
    if protocol == "mbus":
        if table.has("address") == table.has("secondary_address"):
            raise table.error(None, "an M-Bus meter has either a primary address or a secondary_address")
        if table.has("address"):
            address = table.integer("address", low=0, high=250)
            identification = _eight_digits(table, "identification") if table.has("identification") else None
            table.no_unknown_keys()
            return MeterConfig(
                meter_id, address, "mbus", {}, poll_interval, error_flags=flags, identification=identification
            )
        if table.has("identification"):
            raise table.error(
                "identification",
                "is for a meter on a primary address: a meter's secondary_address is its identification already",
            )
        secondary = _eight_digits(table, "secondary_address")
        table.no_unknown_keys()
        return MeterConfig(meter_id, 0xFD, "mbus", {}, poll_interval, secondary_address=secondary, error_flags=flags)
    wmbus_id = _eight_digits(table, "id")
    key = _hex_key(table)
    manufacturer = _flag_code(table)
    table.no_unknown_keys()
    return MeterConfig(
        meter_id,
        0,
        "wmbus",
        {},
        poll_interval,
        wmbus_id=wmbus_id,
        key=key,
        manufacturer=manufacturer,
        error_flags=flags,
    )


ERROR_FLAGS_MAX_BITS = 64  # the record's data field is at most 8 bytes (a 64-bit integer)


def _error_flags(table: Table) -> tuple[str, ...]:
    """An M-Bus meter's ``error_flags``: the alarm each bit of its error flags record stands for,
    bit 0 first, "" for a bit that is none. EN 13757-3 leaves the bits to the manufacturer, so the
    gateway reads the record only for a meter whose map is given (from its data sheet)."""
    names = table.array("error_flags", [])
    if not all(isinstance(name, str) for name in names):
        raise table.error("error_flags", 'a list of alarm names by bit, bit 0 first ("" for a bit that is none)')
    if len(names) > ERROR_FLAGS_MAX_BITS:
        raise table.error("error_flags", f"{len(names)} bits; the record has at most {ERROR_FLAGS_MAX_BITS}")
    unknown = sorted({name for name in names if name} - set(ALARMS))
    if unknown:
        raise table.error(
            "error_flags", f"names alarm(s) {', '.join(map(repr, unknown))}; the reads contract has {', '.join(ALARMS)}"
        )
    return tuple(names)


def parse_config(
    document: dict[str, Any], source: str = "config", lines: LineIndex | None = None, base: Path | None = None
) -> GatewayConfig:
    doc = Document(source, lines)
    top = Table(doc, (), document)
    gateway_id = _identifier(top, "gateway_id")
    endpoint, mqtt_options, mqtt_rest = _mqtt(top.table("mqtt", required=True), base)

    spool_table = top.table("spool")
    spool_path = _resolve(base, spool_table.text("path", f"{gateway_id}-spool.sqlite"))
    spool = SpoolOptions(
        max_readings=spool_table.integer("max_readings", 1_000_000, low=1),
        policy=spool_table.choice("policy", ("drop_oldest", "stop_polling"), "drop_oldest"),
        on_damage=spool_table.choice("on_damage", ("set_aside", "stop"), "set_aside"),
    )
    spool_table.no_unknown_keys()

    health_table = top.table("health")
    health = HealthOptions(
        status_interval_s=health_table.number("status_interval_s", 60.0, low=0.1),
        offline_after=health_table.integer("offline_after", 3, low=1),
    )
    health_table.no_unknown_keys()

    profiles = _ProfileCache()
    buses: dict[str, tuple[str, dict[str, Any], Table]] = {}
    meters: dict[str, list[MeterConfig]] = {}
    meter_places: dict[str, Table] = {}
    unit_places: dict[tuple[str, str | int] | tuple[str, str, str], str] = {}

    def add_meter(table: Table, bus_name: str | None) -> None:
        bus = bus_name if bus_name is not None else table.text("bus")
        if bus_name is not None and table.has("bus") and table.text("bus") != bus_name:
            raise table.error("bus", f"this meter is listed under bus {bus_name!r}")
        if bus not in buses:
            known = ", ".join(repr(b) for b in buses) or "none"
            raise table.error("bus", f"no bus named {bus!r} (buses: {known})")
        meter = _meter(table, profiles, bus, buses[bus][0])
        if meter.meter_id in meter_places:
            first = meter_places[meter.meter_id]
            first_line = doc.lines.line((*first.path, "meter_id")) if doc.lines else None
            also = f" (first at line {first_line})" if first_line else ""
            raise table.error("meter_id", f"duplicate meter id {meter.meter_id!r}{also}")
        key = (
            "unit_id"
            if meter.profile not in ("mbus", "wmbus")
            else ("id" if meter.wmbus_id else "secondary_address" if meter.secondary_address else "address")
        )
        if (bus, meter.address) in unit_places:
            other = unit_places[bus, meter.address]
            raise table.error(key, f"{key.replace('_', ' ')} {meter.address} on bus {bus!r} is already meter {other!r}")
        if meter.identification is not None and (bus, meter.identification) in unit_places:
            # two meters expecting one identification: one of them would fail every poll
            other = unit_places[bus, meter.identification]
            raise table.error("identification", f"{meter.identification} on bus {bus!r} is already meter {other!r}")
        if meter.serial_number is not None and (bus, "serial", meter.serial_number) in unit_places:
            other = unit_places[bus, "serial", meter.serial_number]
            raise table.error("serial_number", f"{meter.serial_number} on bus {bus!r} is already meter {other!r}")
        meter_places[meter.meter_id] = table
        unit_places[bus, meter.address] = meter.meter_id
        if meter.identification is not None:
            unit_places[bus, meter.identification] = meter.meter_id
        if meter.serial_number is not None:
            unit_places[bus, "serial", meter.serial_number] = meter.meter_id
        meters[bus].append(meter)

    nested: list[tuple[Table, str]] = []
    ports: dict[str, str] = {}  # a serial port (symbolic links followed) -> the bus on it
    for bus_table in top.tables("buses"):
        name, protocol, settings = _bus(bus_table)
        if name in buses:
            raise bus_table.error("name", f"duplicate bus name {name!r}")
        if "device" in settings:  # each bus has its own lock: one port, one bus
            port = os.path.realpath(settings["device"])
            if port in ports:
                raise bus_table.error(
                    "device", f"{settings['device']} is already bus {ports[port]!r} (one bus per port)"
                )
            ports[port] = name
        buses[name] = (protocol, settings, bus_table)
        meters[name] = []
        nested.extend((meter_table, name) for meter_table in bus_table.tables("meters"))
        bus_table.no_unknown_keys()
    if not buses:
        raise top.error(None, "no [[buses]]: a gateway needs at least one bus")
    for meter_table, bus_name in nested:
        add_meter(meter_table, bus_name)
    for meter_table in top.tables("meters"):
        add_meter(meter_table, None)
    top.no_unknown_keys()

    built: list[BusConfig] = []
    for name, (protocol, settings, _table) in buses.items():
        built.append(BUS_KINDS[protocol](meters=tuple(meters[name]), **settings))
    return GatewayConfig(
        gateway_id=gateway_id,
        mqtt=endpoint,
        spool_path=spool_path,
        buses=tuple(built),
        mqtt_options=mqtt_options,
        spool=spool,
        health=health,
        **mqtt_rest,
    )


def parse_config_text(text: str, source: str = "config", base: Path | None = None) -> GatewayConfig:
    text = toml_file.without_bom(text)
    return parse_config(toml_file.parse(text, source), source, LineIndex(text), base)


def load_config(path: Path | str) -> GatewayConfig:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: no such file") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error}") from error
    return parse_config_text(toml_file.decode(data, str(path)), str(path), path.resolve().parent)
