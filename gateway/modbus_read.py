"""Reading one meter's profile over a pymodbus client, the same for Modbus TCP and RTU.

pymodbus's own retries are off (``retries=0`` in the transports): the bus scheduler retries with
backoff, so every attempt is counted. A reply that does not decode is a failure like no reply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from aquami.contracts.reads import FLOW_MAX_M3H, VOLUME_MAX_M3, Protocol, Reading
from firmware_protocols.errors import DecodeError
from firmware_protocols.modbus import MeterProfile
from gateway.config import MeterConfig
from gateway.pulse import source_protocol
from gateway.transport import NoAnswer, PollError

#: Modbus exceptions 0Ah (gateway path unavailable) and 0Bh (gateway target device failed to respond):
#: a Modbus TCP gateway's answer for a unit with nothing behind it. No device answered, so no answer:
#: a scan passes over the unit as it does a silent one, not as "answered".
_NOTHING_BEHIND_THE_GATEWAY = (0x0A, 0x0B)

#: Modbus exception codes in the Modbus Application Protocol's words (v1.1b3, section 7).
_EXCEPTIONS = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}


def exception_said(unit_id: int, profile: MeterProfile, start: int, count: int, code: int) -> str:
    """A Modbus exception in a technician's words: what was asked, the code and its meaning, and for
    01h-03h (the device does not have those registers or that function) the profile asked with.
    Before, pymodbus's repr alone: ``exception response ExceptionResponse(dev_id=10,
    function_code=132, exception_code=2)``, 132 being 84h, the error form of function 04h."""
    kind = "input" if profile.function == "input" else "holding"
    meaning = _EXCEPTIONS.get(code, "an exception code the standard does not define")
    registers = f"{kind} registers {start}..{start + count - 1}"
    said = f"exception response {code:02X}h ({meaning}) from unit {unit_id} to a read of {registers}"
    if code in (0x01, 0x02, 0x03):
        said += f": not a meter of profile {profile.name}?"
    return said


def within(value: float | None, low: float, high: float) -> float | None:
    """``value`` if the contract takes it, else None: an optional value it cannot take is left out
    (the collector refuses a whole message for one value beyond the contract's bounds)."""
    return value if value is not None and low <= value <= high else None


def no_answer(error: BaseException) -> bool:
    """Whether a failed request heard nothing back: pymodbus 3.16 raises a ModbusIOException whose
    text says "No response received" (its other ModbusIOExceptions are answers it refused: another
    unit's, another transaction's), or the request timed out."""
    return isinstance(error, TimeoutError) or (
        isinstance(error, ModbusIOException) and "No response received" in str(error)
    )


def millisecond(moment: datetime) -> datetime:
    """Truncate to milliseconds: the grain of the collector's ``(meter_id, ts)`` key."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def read_registers(client: ModbusBaseClient, meter: MeterConfig, profile: MeterProfile) -> list[int]:
    """Every block of ``profile``; pymodbus's own timeout bounds each request (the scheduler bounds
    the whole attempt too)."""
    registers: list[int] = []
    for block in profile.blocks:
        read = client.read_input_registers if profile.function == "input" else client.read_holding_registers
        try:
            response = await read(block.start, count=block.count, device_id=meter.unit_id)
        except (ModbusException, TimeoutError, ConnectionError, ValueError) as error:
            if no_answer(error):
                # said as an M-Bus meter's silence is (``MB000001: no answer``), not in pymodbus's words
                # (``ModbusIOException: Modbus Error: [Input/Output] No response received after 0
                # retries, continue with next request``: the gateway's scheduler does the retrying)
                raise NoAnswer(f"{meter.meter_id}: no answer from unit {meter.unit_id}") from error
            raise PollError(f"{meter.meter_id}: {type(error).__name__}: {error}") from error
        if response.isError():
            if response.exception_code in _NOTHING_BEHIND_THE_GATEWAY:
                said = exception_said(meter.unit_id, profile, block.start, block.count, response.exception_code)
                raise NoAnswer(f"{meter.meter_id}: no answer from unit {meter.unit_id} ({said})")
            said = exception_said(meter.unit_id, profile, block.start, block.count, response.exception_code)
            raise PollError(f"{meter.meter_id}: {said}")
        asked = 0x04 if profile.function == "input" else 0x03
        if response.function_code != asked:  # an answer to another request: not these registers
            raise PollError(
                f"{meter.meter_id}: asked with function {asked:02X}h, answered {response.function_code:02X}h"
            )
        if len(response.registers) != block.count:
            raise PollError(f"{meter.meter_id}: asked for {block.count} registers, got {len(response.registers)}")
        registers.extend(response.registers)
    return registers


def to_reading(
    meter: MeterConfig,
    profile: MeterProfile,
    registers: list[int],
    at: datetime,
    protocol: Protocol,
    bus: str,
    volume_m3: Callable[[float, datetime], float] | None = None,
) -> Reading:
    """The reading in ``registers``; ``protocol`` is the bus's, "pulse" for a pulse counter's count.
    (A poll decodes, checks the serial number and then makes the reading in steps of its own:
    gateway.modbus_transport.)"""
    return reading_of(meter, profile, decoded(meter, profile, registers), at, protocol, bus, volume_m3)


def decoded(meter: MeterConfig, profile: MeterProfile, registers: list[int]) -> Mapping[str, Any]:
    """The fields of ``registers`` as ``profile`` decodes them; registers it cannot decode fail the poll."""
    try:
        return profile.decode_registers(registers)
    except DecodeError as error:
        raise PollError(f"{meter.meter_id}: {error}") from error


def reading_of(
    meter: MeterConfig,
    profile: MeterProfile,
    fields: Mapping[str, Any],
    at: datetime,
    protocol: Protocol,
    bus: str,
    volume_m3: Callable[[float, datetime], float] | None = None,
) -> Reading:
    """The reading in ``fields`` (:func:`decoded`, and checked: gateway.modbus_identity)."""
    volume = fields.get("volume_m3")
    if not isinstance(volume, int | float) or volume < 0:
        raise PollError(f"{meter.meter_id}: profile {profile.name} gave no usable volume ({volume!r})")
    if within(float(volume), 0, VOLUME_MAX_M3) is None:  # before a pulse counter's unwrap remembers it
        raise PollError(f"{meter.meter_id}: volume {volume!r} m3 is outside the reads contract")
    if volume_m3 is not None:
        volume = volume_m3(float(volume), at)
    reverse = fields.get("reverse_volume_m3")
    flow = fields.get("flow_m3h")
    return Reading(
        meter_id=meter.meter_id,
        ts=millisecond(at),
        volume_m3=float(volume),
        flow_m3h=None if flow is None else within(float(flow), -FLOW_MAX_M3H, FLOW_MAX_M3H),
        reverse_volume_m3=None if reverse is None else within(float(reverse), 0, VOLUME_MAX_M3),
        alarms=tuple(dict.fromkeys(fields.get("alarms", ()))),
        protocol=source_protocol(profile, protocol),
        bus=bus,
        address=meter.unit_id,
    )
