"""Meter profiles: which registers a meter model exposes and which reading fields they fill.

A profile is a TOML file (see ``profiles/``) naming register blocks, value types with word and byte
order, a decimal scale, and the reading field each value fills (``volume_m3``, ``flow_m3h``,
``reverse_volume_m3``, ``alarms`` as bit names, or anything else, reported as is). Like wmbusmeters'
drivers, each profile carries its own test vectors (``[[examples]]``): registers and what they mean.

A field named ``serial_number`` is the meter's serial number (an unsigned integer register, u16, u32
or u64, no scale), decoded as its decimal digits (a ``str``): a unit id is a setting of the device,
not the device, so the gateway checks at each poll that the serial number is the meter's
(gateway.modbus_identity). A register that reads 0 or all ones (0xFFFF..., the erased value) is a
serial number never set, by the factory or the installer: it decodes to None, "no serial number", as
an unset float register does (:func:`serial_unset`). Before, it decoded to "0" like any number, and
was taken as the meter's identity: every such meter alike, two of them swapped never told apart.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast

import construct as c

from firmware_protocols.errors import DecodeError
from firmware_protocols.modbus.types import Order, ValueType, register_count, value_construct

PROFILE_DIR = Path(__file__).with_name("profiles")
READING_FIELDS = ("volume_m3", "flow_m3h", "reverse_volume_m3")
#: The field holding the meter's serial number, and the types it may have (an unsigned integer, as
#: meters give it: two registers as one decimal number is the most common)
SERIAL_FIELD = "serial_number"
_SERIAL_TYPES = ("u16", "u32", "u64")
_VALUE_TYPES = ("u16", "s16", "u32", "s32", "f32", "u64")
_ORDERS = ("big", "little")


class ProfileError(ValueError):
    """A profile file that is not valid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """Registers read in one request: ``count`` registers from ``start``."""

    start: int
    count: int


@dataclass(frozen=True, slots=True)
class RegisterField:
    name: str
    register: int
    type: ValueType
    scale: Decimal = Decimal(1)
    word_order: Order = "big"
    byte_order: Order = "big"
    bits: Mapping[int, str] = field(default_factory=dict)
    scale_parameters: frozenset[str] = frozenset()  # the ``${name}`` its scale took from the meter's parameters

    @property
    def registers(self) -> range:
        return range(self.register, self.register + register_count(self.type))


@dataclass(frozen=True)
class MeterProfile:
    name: str
    description: str
    function: Literal["input", "holding"]
    blocks: tuple[RegisterBlock, ...]
    fields: tuple[RegisterField, ...]
    examples: tuple[Mapping[str, Any], ...] = ()
    _layout: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_layout", self._build_layout())

    @property
    def parameters(self) -> frozenset[str]:
        """The parameters the profile's scales name (a pulse counter's ``litres_per_pulse``)."""
        return frozenset().union(*(f.scale_parameters for f in self.fields))

    def field_named(self, name: str) -> RegisterField | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def serial_field(self) -> RegisterField | None:
        """The field holding the meter's serial number, if the profile names one."""
        return self.field_named(SERIAL_FIELD)

    @property
    def register_total(self) -> int:
        return sum(block.count for block in self.blocks)

    def _offset(self, register: int) -> int:
        """Where ``register`` sits in the concatenation of all blocks, in registers."""
        offset = 0
        for block in self.blocks:
            if block.start <= register < block.start + block.count:
                return offset + register - block.start
            offset += block.count
        raise ProfileError(f"profile {self.name}: register {register} lies in no block")

    def _build_layout(self) -> Any:
        """One Construct Struct over all blocks concatenated, fields at their offsets."""
        members = []
        for f in sorted(self.fields, key=lambda f: self._offset(f.register)):
            for register in f.registers:
                self._offset(register)  # every register of the field must be read
            members.append(
                f.name / c.Pointer(2 * self._offset(f.register), value_construct(f.type, f.word_order, f.byte_order))
            )
        return c.Struct(*members, c.Bytes(2 * self.register_total))

    def decode_registers(self, registers: Sequence[int]) -> dict[str, Any]:
        """Registers of all blocks, in block order, to reading fields; raises DecodeError."""
        if len(registers) != self.register_total:
            raise DecodeError(f"profile {self.name}: expected {self.register_total} registers, got {len(registers)}")
        if any(not 0 <= r <= 0xFFFF for r in registers):
            raise DecodeError(f"profile {self.name}: register values must be 0..65535")
        return self.decode_bytes(b"".join(r.to_bytes(2, "big") for r in registers))

    def decode_bytes(self, data: bytes) -> dict[str, Any]:
        """Registers as sent on the wire (big-endian 16-bit words) to reading fields."""
        if len(data) != 2 * self.register_total:
            raise DecodeError(
                f"profile {self.name}: expected {2 * self.register_total} bytes ({self.register_total} registers), "
                f"got {len(data)}"
            )
        try:
            raw = self._layout.parse(data)
        except c.ConstructError as error:
            raise DecodeError(f"profile {self.name}: {error}") from error
        result: dict[str, Any] = {"profile": self.name}
        alarms: list[str] = []
        for f in self.fields:
            value = raw[f.name]
            if f.bits:
                alarms.extend(name for bit, name in sorted(f.bits.items()) if value >> bit & 1)
                continue
            if f.name == SERIAL_FIELD:  # an identity, not a quantity: its digits, as on the meter's label
                result[f.name] = None if serial_unset(int(value), f.type) else str(value)
                continue
            if isinstance(value, float) and not math.isfinite(value):
                # NaN or an infinity (IEEE 754): the meter's "no value" (a flow sensor not ready, an
                # overflowed or unset register). None, not an error: the rest of the block still reads.
                result[f.name] = None
                continue
            result[f.name] = _scaled(value, f.scale)
        result["alarms"] = alarms
        return result

    def encode(self, values: Mapping[str, Any]) -> list[int]:
        """Reading fields to register values (the simulators' side); alarms as a list of names."""
        fields_raw: dict[str, Any] = {}
        for f in self.fields:
            if f.bits:
                active = set(values.get("alarms", ()))
                fields_raw[f.name] = sum(1 << bit for bit, name in f.bits.items() if name in active)
            elif f.name == SERIAL_FIELD:
                fields_raw[f.name] = serial_value(values.get(f.name, "0"), f.type)
            elif f.type == "f32":
                fields_raw[f.name] = float(Decimal(str(values.get(f.name, 0))) / f.scale)
            else:
                fields_raw[f.name] = int((Decimal(str(values.get(f.name, 0))) / f.scale).to_integral_value())
        blank = bytes(2 * self.register_total)
        data = bytearray(blank)
        for f in self.fields:
            offset = 2 * self._offset(f.register)
            encoded = value_construct(f.type, f.word_order, f.byte_order).build(fields_raw[f.name])
            data[offset : offset + len(encoded)] = encoded
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def serial_value(serial: Any, value_type: ValueType) -> int:
    """The register value of a serial number given as its decimal digits (``"40012345"``); a
    ValueError, in words, for one that is not digits or does not fit ``value_type``."""
    text = str(serial).strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"serial number {serial!r} is not decimal digits 0-9")
    value = int(text)
    largest = (1 << 16 * register_count(value_type)) - 1
    if value > largest:
        raise ValueError(f"serial number {text} does not fit a {value_type} register (at most {largest})")
    return value


def serial_unset(value: int, value_type: ValueType) -> bool:
    """Whether a serial number register holding ``value`` was never set: 0 (a meter's registers
    start at 0) or all ones (``0xFFFF``..., erased flash), values no meter's label carries."""
    return value in (0, (1 << 16 * register_count(value_type)) - 1)


def _scaled(value: int | float, scale: Decimal) -> int | float:
    if isinstance(value, float):
        return float(Decimal(repr(value)) * scale)
    if scale == 1:
        return value
    return float(Decimal(value) * scale)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path, parameters: Mapping[str, Any] | None = None) -> MeterProfile:
    """Load a profile by name (``profiles/NAME.toml``) or path; ``parameters`` fill ``${name}`` scales.

    A pulse counter's scale depends on the meter behind it (litres per pulse), so its profile says
    ``scale = "${litres_per_pulse}e-3"`` and the gateway passes the meter's ``litres_per_pulse``.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ProfileError(f"unknown meter profile {name_or_path!r}; known: {', '.join(available_profiles())}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # UTF-8, as TOML is; a byte order mark (Windows editors) dropped
    except UnicodeDecodeError as error:
        raise ProfileError(f"{path}: not UTF-8 (byte 0x{error.object[error.start]:02x}): save it as UTF-8") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: {error}") from error
    profile = parse_profile(document, source=str(path), parameters=parameters or {})
    _check_examples(document, str(path))
    return profile


def _check_examples(document: Mapping[str, Any], source: str) -> None:
    """A profile's ``[[examples]]`` (registers as read, with the values they must give) hold: a
    utility's own profile with a wrong word order or scale is refused when it loads, not found out
    from a month of wrong registers (the shipped profiles' examples are also run by the tests)."""
    for i, example in enumerate(_examples(document, source)):
        where = f"{source}: examples[{i}]"
        parameters, expect = example.get("parameters") or {}, example.get("expect") or {}
        if not isinstance(example.get("registers"), str) or not isinstance(expect, Mapping):
            raise ProfileError(f"{where}: an example gives 'registers' (hex) and 'expect' (a table)")
        if not isinstance(parameters, Mapping):
            raise ProfileError(f"{where}: an example's parameters are a table (name = value)")
        profile = parse_profile(document, source, parameters)
        try:
            decoded = profile.decode_bytes(bytes.fromhex("".join(example["registers"].split())))
        except (ValueError, DecodeError) as error:
            raise ProfileError(f"{where}: {error}") from None
        for name, expected in expect.items():
            got = decoded.get(name)
            same = math.isclose(got, expected, rel_tol=1e-12) if isinstance(got, float) else got == expected
            if not same:
                raise ProfileError(f"{where}: {name} decodes as {got!r}, the example says {expected!r}")


def _require(table: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(table, Mapping):  # blocks = [1]: a number where a table was due
        raise ProfileError(f"{where}: expected a table, not {type(table).__name__}")
    if key not in table:
        raise ProfileError(f"{where}: missing field {key!r}")
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProfileError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _scale(text: Any, parameters: Mapping[str, Any], where: str) -> tuple[Decimal, frozenset[str]]:
    """The scale, and the names of the meter's parameters it took (``${name}``)."""
    text = str(text)
    used = []
    for key, value in parameters.items():
        if "${" + key + "}" not in text:
            continue
        used.append(key)
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ProfileError(f"{where}: parameter {key} = {value!r} is not a decimal number") from None
        if not number.is_finite() or number <= 0:
            raise ProfileError(f"{where}: parameter {key} = {value!r} must be a number above zero")
        # in plain digits: pasted as Python writes it, 1e-05 made the scale '1e-05e-3'
        text = text.replace("${" + key + "}", format(number, "f"))
    if "${" in text:
        # named, and how to give it: `aquami decode modbus --profile pulse_counter` and `gateway
        # scan` said only "needs a parameter the meter's configuration does not give"
        missing = ", ".join(sorted(set(re.findall(r"\$\{([^}]*)\}", text)))) or text
        raise ProfileError(
            f"{where}: scale {text!r} needs a parameter, {missing}, not given (a meter's `parameters` "
            f"in the gateway's configuration, or --param {missing.split(', ')[0]}=VALUE on the command line)"
        )
    try:
        scale = Decimal(text)
    except InvalidOperation as error:
        raise ProfileError(f"{where}: scale {text!r} is not a decimal number") from error
    if not scale.is_finite() or scale == 0:
        raise ProfileError(f"{where}: scale must be a finite non-zero number")
    return scale, frozenset(used)


# Every key a profile file may hold, by table: any other is a typo to refuse, not to ignore
# ("wordorder", "word-order", "scale_factor" were dropped and the defaults used: 123.456 m³ published
# as 3,795,845,121 m³, and `aquami gateway check` said ok).
_TOP_KEYS = ("name", "description", "function", "word_order", "byte_order", "blocks", "fields", "examples")
_BLOCK_KEYS = ("start", "count")
_FIELD_KEYS = ("name", "register", "type", "scale", "word_order", "byte_order", "bits")
_EXAMPLE_KEYS = ("registers", "expect", "parameters")


def _refuse_unknown_keys(table: Any, known: Sequence[str], where: str) -> None:
    if not isinstance(table, Mapping):
        return  # (the caller's _require says what was due)
    unknown = [key for key in table if key not in known]
    if unknown:
        raise ProfileError(f"{where}: unknown key {unknown[0]!r}; a profile's keys here are {', '.join(known)}")


def parse_profile(document: Mapping[str, Any], source: str, parameters: Mapping[str, Any]) -> MeterProfile:
    _refuse_unknown_keys(document, _TOP_KEYS, source)
    name = _require(document, "name", str, source)
    function = document.get("function", "input")
    if function not in ("input", "holding"):
        raise ProfileError(f"{source}: function must be 'input' or 'holding'")
    default_words = document.get("word_order", "big")
    default_bytes = document.get("byte_order", "big")
    if default_words not in _ORDERS or default_bytes not in _ORDERS:
        raise ProfileError(f"{source}: word_order and byte_order are 'big' or 'little'")
    blocks = []
    for i, block in enumerate(_require(document, "blocks", list, source)):
        where = f"{source}: blocks[{i}]"
        _refuse_unknown_keys(block, _BLOCK_KEYS, where)
        start, count = _require(block, "start", int, where), _require(block, "count", int, where)
        if not (0 <= start <= 0xFFFF and 1 <= count <= 125 and start + count <= 0x10000):  # 125: one read's most
            raise ProfileError(f"{where}: start must be 0..65535, count 1..125, and the block within 65536 registers")
        blocks.append(RegisterBlock(start, count))
    fields = []
    seen: set[str] = set()
    for i, table in enumerate(_require(document, "fields", list, source)):
        where = f"{source}: fields[{i}]"
        field_name = _require(table, "name", str, where)
        _refuse_unknown_keys(table, _FIELD_KEYS, f"{where} ({field_name!r})")
        if not field_name.strip():  # it decoded to a reading with no name to find the value by
            raise ProfileError(f"{where}: a field needs a name")
        if field_name in seen:
            raise ProfileError(f"{where}: duplicate field name {field_name!r}")
        if field_name in ("profile", "alarms"):  # the decoded reading's own keys
            raise ProfileError(f"{where}: {field_name!r} is a name the decoded reading keeps for itself")
        seen.add(field_name)
        value_type = _require(table, "type", str, where)
        if value_type not in _VALUE_TYPES:
            raise ProfileError(f"{where}: type {value_type!r} is not one of {', '.join(_VALUE_TYPES)}")
        word_order = table.get("word_order", default_words)
        byte_order = table.get("byte_order", default_bytes)
        if word_order not in _ORDERS or byte_order not in _ORDERS:
            raise ProfileError(f"{where}: word_order and byte_order are 'big' or 'little'")
        bits = _bits(table.get("bits", {}), value_type, where)
        if field_name == SERIAL_FIELD and (value_type not in _SERIAL_TYPES or "scale" in table or bits):
            raise ProfileError(
                f"{where}: {SERIAL_FIELD!r} is the meter's serial number: an unsigned integer "
                f"({', '.join(_SERIAL_TYPES)}) read as its decimal digits, with no scale and no bits"
            )
        if bits and "scale" in table:  # (it was ignored)
            raise ProfileError(f"{where}: a field of status bits has no scale")
        scale, scale_parameters = _scale(table.get("scale", "1"), parameters, where)
        fields.append(
            RegisterField(
                name=field_name,
                register=_require(table, "register", int, where),
                type=cast(ValueType, value_type),
                scale=scale,
                scale_parameters=scale_parameters,
                word_order=cast(Order, word_order),
                byte_order=cast(Order, byte_order),
                bits=bits,
            )
        )
    _refuse_overlaps(fields, blocks, source)
    _refuse_fields_outside_blocks(fields, blocks, source)
    examples = _examples(document, source)
    if not any(f.name == "volume_m3" and not f.bits for f in fields):  # every poll failed for want of it
        raise ProfileError(f"{source}: a profile needs a field named 'volume_m3' (the meter's register)")
    return MeterProfile(
        name=name,
        description=str(document.get("description", "")),
        function=function,
        blocks=tuple(blocks),
        fields=tuple(fields),
        examples=examples,
    )


def _examples(document: Mapping[str, Any], source: str) -> tuple[Mapping[str, Any], ...]:
    examples = document.get("examples", [])
    if not isinstance(examples, list) or not all(isinstance(e, Mapping) for e in examples):
        raise ProfileError(f"{source}: examples is a list of tables ([[examples]])")
    for i, example in enumerate(examples):
        _refuse_unknown_keys(example, _EXAMPLE_KEYS, f"{source}: examples[{i}]")
    return tuple(examples)


def _bits(table: Any, value_type: str, where: str) -> dict[int, str]:
    """A field's status bits: bit number → alarm name. Only on an integer, each bit within it and
    each name once (a bit beyond the field never fires; a negative one failed every poll with a
    ValueError the poll did not catch; a name twice came out twice)."""
    if not table:
        return {}
    if not isinstance(table, Mapping):
        raise ProfileError(f"{where}: bits is a table of bit number = alarm name")
    if value_type == "f32":
        raise ProfileError(f"{where}: bits need an integer type, not {value_type}")
    width = 16 * register_count(cast(ValueType, value_type))
    bits: dict[int, str] = {}
    for key, alarm in table.items():
        try:
            bit = int(key)
        except ValueError:
            raise ProfileError(f"{where}: bits: {key!r} is no bit number") from None
        if not 0 <= bit < width:
            raise ProfileError(f"{where}: bits: bit {bit} is outside the {width}-bit {value_type}")
        if str(alarm) in bits.values():
            raise ProfileError(f"{where}: bits: alarm {alarm!r} named twice")
        bits[bit] = str(alarm)
    return bits


def _refuse_overlaps(fields: Sequence[RegisterField], blocks: Sequence[RegisterBlock], where: str) -> None:
    """Two fields on one register read each other's halves (a u32 at 0 and a u16 at 1); so do two
    blocks reading one register twice."""
    owner: dict[int, str] = {}
    for f in fields:
        for register in f.registers:
            if register in owner:
                raise ProfileError(f"{where}: fields {owner[register]!r} and {f.name!r} share register {register}")
            owner[register] = f.name
    read: set[int] = set()
    for block in blocks:
        span = set(range(block.start, block.start + block.count))
        if read & span:
            raise ProfileError(f"{where}: blocks overlap at register {min(read & span)}")
        read |= span


def _refuse_fields_outside_blocks(fields: Sequence[RegisterField], blocks: Sequence[RegisterBlock], where: str) -> None:
    """A field on a register no block reads has nothing to decode from (the profile failed when it
    first decoded, naming no file). A field across two blocks is refused too: each block is its own
    request, so the meter could update between the halves (a torn read: 65.535 → 65.536 m³ in
    litres between the two requests was published as 131.071 m³); and its halves were taken from
    the blocks' concatenation, so with blocks out of address order (0–1, 10–11, 2–3) a u32 at 1–2
    was decoded from registers 1 and 10. Within one block, a field's offset is its own block's."""
    read = {register for block in blocks for register in range(block.start, block.start + block.count)}
    for f in fields:
        unread = [register for register in f.registers if register not in read]
        if unread:
            raise ProfileError(f"{where}: field {f.name!r} is on register {unread[0]}, which no block reads")
        if not any(block.start <= f.register and f.registers[-1] < block.start + block.count for block in blocks):
            raise ProfileError(
                f"{where}: field {f.name!r} (registers {f.register}..{f.registers[-1]}) spans two blocks; "
                "a value must be read in one request: make one block hold all its registers"
            )
