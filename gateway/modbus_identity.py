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

A serial number never set (its register reads 0, or all ones: firmware_protocols.modbus.profile
decodes it to None) is no identity: every such meter answers with it. Such a meter is read as one
without a serial number, as a pulse counter is: nothing remembered, nothing checked, said once a run
(a warning naming the meter, its unit and bus, and what to do). Before, "0" was remembered as its
serial number, and checked: two such meters swapped were never told apart, and the check looked
real. A meter configured with a serial number, or with a real one remembered, that now answers
with none set is refused: another meter answered (a new one, never given its serial number).

An answer from another meter is refused for that poll (:class:`SerialNumberMismatch`, a
:class:`PollRefused`: not retried within the poll; said once an episode by the scheduler, in the
meter's health ``last_error``), its words saying which serial number answered, which was expected,
at which unit of which bus, and what to do. Nothing of it is stored: no reading, no remembered
serial number.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aquami.contracts.reads import utc_iso
from firmware_protocols.modbus.profile import SERIAL_FIELD, MeterProfile, serial_unset
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.meter_identity import SERIAL_NUMBER, MeterIdentities, kind_of
from gateway.transport import PollRefused

log = logging.getLogger(__name__)

#: what a scan shows for a unit whose serial number register was never set (gateway.scan)
NOT_SET = "not set"


class SerialNumberMismatch(PollRefused):
    """A meter at a unit id answered with another serial number than expected: not retried within
    the poll (the same meter answers at that unit id however often it is asked)."""


def expected_serial_number(identities: MeterIdentities, meter: MeterConfig) -> str | None:
    """The serial number ``meter``'s answers must carry: its configured one, else its first
    answer's, else None (no answer yet, or a profile with no serial number)."""
    return identities.expected(meter.meter_id, meter.serial_number, SERIAL_NUMBER)


def check_serial_number(
    identities: MeterIdentities,
    meter: MeterConfig,
    fields: Mapping[str, Any],
    at: datetime,
    bus: ModbusTcpBusConfig | ModbusRtuBusConfig,
    profile: MeterProfile | None = None,
) -> None:
    """Refuse ``fields`` (an answer at ``meter``'s unit id, decoded by its profile) if another meter
    sent it; remember its serial number if it is ``meter``'s first answer. Nothing to check for a
    profile that reads no serial number, or for a unit that is none of the bus's meters (a scan's).
    A serial number never set (None) is no identity: said once, the reading taken unchecked, unless
    the meter is known by one (refused). ``profile``, the meter's: a serial number never set that an
    earlier version remembered ("0") is set aside."""
    if SERIAL_FIELD not in fields or meter not in bus.meters:
        return
    sent = fields[SERIAL_FIELD]
    if profile is not None:
        _set_aside_if_unset(identities, meter, profile)
    if sent is None:
        expected = expected_serial_number(identities, meter)
        if expected is not None:
            raise SerialNumberMismatch(_unset_refused(identities, meter, expected, bus))
        if identities.once(meter.meter_id, "serial number not set"):
            log.warning("%s", _unset_said(meter, bus))
        return
    if not isinstance(sent, str):
        return
    expected = identities.take(meter.meter_id, sent, meter.serial_number, at, SERIAL_NUMBER)
    if expected is not None:
        raise SerialNumberMismatch(_mismatch(identities, meter, sent, expected, bus))


def taken_from_memory(
    identities: MeterIdentities,
    meter: MeterConfig,
    fields: Mapping[str, Any],
    bus: ModbusTcpBusConfig | ModbusRtuBusConfig,
) -> bool:
    """True where :func:`check_serial_number` would take ``fields`` and read, write and say nothing:
    no serial number to check, a unit that is none of the bus's meters (a scan's), or the serial
    number ``meter`` is known by in this run (:meth:`MeterIdentities.known`). A Modbus poll then skips
    the thread the check runs in (gateway.modbus_transport); before, every poll took one, a known
    meter's too. Only a real serial number: None (never set) is said once, or refused for a meter
    known by one; and one decoded by the meter's profile is not the register's unset value, which
    :func:`_set_aside_if_unset` would set aside. (The bus's meters are looked through last: a known
    meter's poll does not go through a bus of 247 on the event loop.)"""
    if SERIAL_FIELD not in fields:
        return True
    sent = fields[SERIAL_FIELD]
    if isinstance(sent, str) and identities.known(meter.meter_id, sent, meter.serial_number, SERIAL_NUMBER):
        return True  # (one of the bus's meters: taken; or none of them: not checked, as below)
    return meter not in bus.meters


def _set_aside_if_unset(identities: MeterIdentities, meter: MeterConfig, profile: MeterProfile) -> None:
    """A remembered serial number that is the register's unset value (remembered before it was known
    as such) is no identity: not expected, replaced by the first real one."""
    field = profile.serial_field
    first = identities.first(meter.meter_id)
    if field is None or first is None or kind_of(first) not in (None, SERIAL_NUMBER):
        return
    if first.identification.isdigit() and serial_unset(int(first.identification), field.type):
        identities.set_aside(meter.meter_id, first)


def _unit(meter: MeterConfig, bus: ModbusTcpBusConfig | ModbusRtuBusConfig) -> str:
    return f"unit {meter.unit_id} of bus {bus.name} ({bus.address})"


def _unset_said(meter: MeterConfig, bus: ModbusTcpBusConfig | ModbusRtuBusConfig) -> str:
    return (
        f"{meter.meter_id}: the meter at {_unit(meter, bus)} answers with no serial number set (its register "
        "reads 0, or all ones): it is read unchecked, as a meter without one, and a meter exchanged or unit ids "
        "swapped there would be taken as this one; its serial_number cannot be configured. Set the meter's own "
        "serial number (the one on its label, with the manufacturer's tool), and it is checked from its next "
        "answer on; until then, only its unit_id says which meter it is: check it at the meter"
    )


def _unset_refused(
    identities: MeterIdentities, meter: MeterConfig, expected: str, bus: ModbusTcpBusConfig | ModbusRtuBusConfig
) -> str:
    came = f"{meter.meter_id}: at {_unit(meter, bus)} a meter with no serial number set (0, or all ones) answered, "
    came += f"not {expected}, {_known_by(identities, meter)}: its reading is not taken. A meter exchanged for one "
    came += "never given its serial number, or unit ids set anew by a technician? `aquami gateway scan` lists the "
    came += "bus's meters by serial number; set the new meter's serial number (the one on its label, with the "
    came += "manufacturer's tool), or, "
    if meter.serial_number is not None:
        came += "to read it unchecked, take serial_number out of this meter's configuration, "
    else:
        came += "to read it unchecked, "
    return came + "give it a meter_id of its own, and reload"


def _known_by(identities: MeterIdentities, meter: MeterConfig) -> str:
    """How ``meter`` is known by the serial number expected: configured, or its first answer's."""
    if meter.serial_number is not None:
        return "the serial number this meter is configured with"
    first = identities.first(meter.meter_id)
    assert first is not None  # (expected came from it)
    return f"the serial number of this meter's first answer, at {utc_iso(first.at)}"


def _mismatch(
    identities: MeterIdentities,
    meter: MeterConfig,
    sent: str,
    expected: str,
    bus: ModbusTcpBusConfig | ModbusRtuBusConfig,
) -> str:
    came = f"{meter.meter_id}: at {_unit(meter, bus)} the meter with serial number {sent} answered, not {expected}"
    came += f", {_known_by(identities, meter)}{_whose(identities, meter, sent, bus)}: its reading is not taken. "
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
