"""Which meter answers at a Modbus unit id: its serial number checked at every poll.

A unit id (1..247, on an RS-485 line or behind a Modbus TCP gateway) is a setting of the device, not
the device: a meter exchanged for a new one set to the same unit id, or two meters' unit ids swapped
by a technician, answer the gateway's polls as the old one did, and their registers were stored as
the configured meter's (a new meter's 0 m3 after the old one's 1,234 m3: an invented step back or
reverse flow; a neighbour's water billed). A meter whose profile reads its serial number (a field
named ``serial_number``: firmware_protocols.modbus.profile) has it checked at each poll, against the
meter's configured ``serial_number``, else the one its first answer carried, remembered in the spool
as a wired M-Bus meter's identification is (gateway.meter_identity, which says why a meter exchanged
while the gateway was down is refused too). A profile without one (a pulse counter: a counter, not a
meter) is not checked.

An answer from another meter is refused for that poll (:class:`SerialNumberMismatch`, a
:class:`PollRefused`: not retried within the poll; said once an episode by the scheduler, in the
meter's health ``last_error``), its words saying which serial number answered, which was expected,
at which unit of which bus, and what to do. Nothing of it is stored: no reading, no remembered
serial number.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aquami.contracts.reads import utc_iso
from firmware_protocols.modbus.profile import SERIAL_FIELD
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.meter_identity import MeterIdentities
from gateway.transport import PollRefused


class SerialNumberMismatch(PollRefused):
    """A meter at a unit id answered with another serial number than expected: not retried within
    the poll (the same meter answers at that unit id however often it is asked)."""


def expected_serial_number(identities: MeterIdentities, meter: MeterConfig) -> str | None:
    """The serial number ``meter``'s answers must carry: its configured one, else its first
    answer's, else None (no answer yet, or a profile with no serial number)."""
    return identities.expected(meter.meter_id, meter.serial_number)


def check_serial_number(
    identities: MeterIdentities,
    meter: MeterConfig,
    fields: Mapping[str, Any],
    at: datetime,
    bus: ModbusTcpBusConfig | ModbusRtuBusConfig,
) -> None:
    """Refuse ``fields`` (an answer at ``meter``'s unit id, decoded by its profile) if another meter
    sent it; remember its serial number if it is ``meter``'s first answer. Nothing to check for a
    profile that reads no serial number, or for a unit that is none of the bus's meters (a scan's)."""
    sent = fields.get(SERIAL_FIELD)
    if not isinstance(sent, str) or meter not in bus.meters:
        return
    expected = identities.take(meter.meter_id, sent, meter.serial_number, at, "serial number")
    if expected is not None:
        raise SerialNumberMismatch(_mismatch(identities, meter, sent, expected, bus))


def _mismatch(
    identities: MeterIdentities,
    meter: MeterConfig,
    sent: str,
    expected: str,
    bus: ModbusTcpBusConfig | ModbusRtuBusConfig,
) -> str:
    unit = f"unit {meter.unit_id} of bus {bus.name} ({bus.address})"
    came = f"{meter.meter_id}: at {unit} the meter with serial number {sent} answered, not {expected}"
    if meter.serial_number is not None:
        came += ", the serial number this meter is configured with"
    else:
        first = identities.first(meter.meter_id)
        assert first is not None  # (expected came from it)
        came += f", the serial number of this meter's first answer, at {utc_iso(first.at)}"
    came += f"{_whose(identities, meter, sent, bus)}: its reading is not taken. "
    came += "A meter exchanged, or unit ids set anew by a technician? "
    came += "`aquami gateway scan` lists the bus's meters by serial number (it is on each meter's label too); "
    if meter.serial_number is not None:
        return came + (
            f"then set this meter's unit_id to where {expected} answers, or, for a new meter, "
            f'serial_number = "{sent}", and reload'
        )
    return came + (
        f'once the meter at unit {meter.unit_id} is checked, pin it: serial_number = "{sent}" in this '
        "meter's configuration (or set its unit_id to where its own meter answers), and reload"
    )


def _whose(
    identities: MeterIdentities, meter: MeterConfig, sent: str, bus: ModbusTcpBusConfig | ModbusRtuBusConfig
) -> str:
    """`` (40012345 is FLAT-6's, at unit 6)``, if another meter of the bus is known by ``sent``."""
    for other in bus.meters:
        if other.meter_id != meter.meter_id and expected_serial_number(identities, other) == sent:
            return f" ({sent} is {other.meter_id}'s, at unit {other.unit_id})"
    return ""
