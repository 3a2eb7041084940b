"""Finding meters on a bus: try each address, keep those that answer, write a config snippet.

For Modbus (TCP and RTU) this tries unit ids with one read of the given profile's registers; a unit
that answers and decodes is a meter. The snippet is ``[[meters]]`` tables ready to paste into the
gateway's TOML file, with placeholder meter ids to be replaced by the utility's own, and each unit's
``serial_number`` where its profile reads one (heard by the transport: gateway.modbus_transport), so
that a pasted table pins its meter (gateway.modbus_identity); a serial number a meter of the bus is
known by (configured, or remembered by the gateway, in its spool) is said with that meter: a swap seen in a scan.
A unit whose serial number was never set (its register reads 0, or all ones) is said so, in a comment
where its ``serial_number`` would be: before, the snippet pinned it with ``serial_number = "0"``.
What answered at each configured meter's address (its own, another's, one no meter has: exchanged?,
or nothing) is gateway.scan_configured's.

pymodbus logs every request that is not answered, with the frame sent (``No response received after
0 retries, continue with next request`` and ``>>>>> send: 0x1 0x4 …``): two lines for each unit
that is not there, up to 494 on an empty bus, where the scan's own lines were lost. A scan keeps
pymodbus quiet (:func:`pymodbus_quiet`), and a bus that cannot be used is still said, in our own
one line; ``--verbose`` shows pymodbus's frames instead, sent and received.

A scan run by a gateway (the MQTT ``scan`` command) cannot lower pymodbus's one logger: the gateway's
other buses log through it at the same time. :func:`scan_modbus` marks its own work instead (a
context variable, which the tasks it starts inherit), and a filter on that logger drops the records
logged while it is set, unless the logger is at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH, Reading
from aquami.pymodbus_lines import PYMODBUS_LOGGER, pymodbus_at_debug  # (callers import PYMODBUS_LOGGER from here too)
from gateway.config import MeterConfig
from gateway.late_answers import LateAnswers, selection_answered, selections_unanswered
from gateway.meter_identity import FirstAnswer, kind_of
from gateway.modbus_identity import NOT_SET
from gateway.transport import LineUnusable, NoAnswer, PollError

Attempt = Callable[[MeterConfig], Awaitable[Reading]]
_scanning: ContextVar[bool] = ContextVar("aquami_gateway_scanning", default=False)


def _not_during_a_scan(record: logging.LogRecord) -> bool:
    """pymodbus's records are dropped while a scan's own work logs them (an absent unit's "No
    response received …" and its frames, an answer refused), unless pymodbus's logger is at DEBUG."""
    return not _scanning.get() or pymodbus_at_debug()


logging.getLogger(PYMODBUS_LOGGER).addFilter(_not_during_a_scan)


def pymodbus_verbose() -> None:
    """pymodbus's logger at DEBUG (``gateway run --verbose``, ``gateway scan --verbose``): every frame
    sent and received, to whatever handler the process has, and the records the gateway's filters
    drop otherwise (a request left unanswered, a scan's; not a bus that will not open, which the
    gateway's own line says with its reason)."""
    logging.getLogger(PYMODBUS_LOGGER).setLevel(logging.DEBUG)


@contextmanager
def pymodbus_quiet(verbose: bool = False) -> Iterator[None]:
    """While a scan runs: pymodbus's logger silent, or with ``verbose`` at DEBUG
    (:func:`pymodbus_verbose`). Its level is given back afterwards."""
    logger = logging.getLogger(PYMODBUS_LOGGER)
    before = logger.level
    if verbose:
        pymodbus_verbose()
    else:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(before)


@dataclass(frozen=True)
class Words:
    """How a protocol's scan names an address and the identity its answers carry."""

    address: str  # ``unit 5``, ``primary address 5``
    identity: str  # ``serial number 40000005``, ``identification 11111111``
    identity_key: str  # the meter table's key that pins it
    address_key: str  # the meter table's key of its address
    swapped: str  # two meters' addresses exchanged by hand


MODBUS_WORDS = Words("unit", "serial number", "serial_number", "unit_id", "unit ids swapped")
MBUS_WORDS = Words("primary address", "identification", "identification", "address", "addresses swapped")
SECONDARY = 0xFD  # an M-Bus meter configured by its secondary address: its unit_id (no primary address)


@dataclass(frozen=True)
class SerialOwner:
    """A meter of the scanned bus known by a serial number: configured with it (``pinned``), or
    remembered with it, its first answer's (gateway.meter_identity)."""

    meter_id: str
    unit_id: int
    pinned: bool

    def said(self, unit_id: int, words: Words = MODBUS_WORDS) -> str:
        """``FLAT-5's (configured with it, at unit 5): unit ids swapped, or the meter moved?``, for
        the unit ``unit_id`` that answered with it (an M-Bus meter: at a primary address)."""
        how = "configured with it" if self.pinned else "its first answer's"
        if words is MBUS_WORDS and SECONDARY in (self.unit_id, unit_id):  # by secondary address, or not placed
            return f"{self.meter_id}'s ({how}: configured already)"
        if self.unit_id == unit_id:
            return f"{self.meter_id}'s ({how}, at this {words.address}: configured already)"
        return f"{self.meter_id}'s ({how}, at {words.address} {self.unit_id}): {words.swapped}, or the meter moved?"


def serial_owners(
    meters: Iterable[MeterConfig], kind: str, remembered: Mapping[str, FirstAnswer] | None = None
) -> dict[str, SerialOwner]:
    """The meters of a bus by the serial number each is known by: its configured ``serial_number``
    (an M-Bus meter: its ``identification``, or its ``secondary_address``), else the one its first
    answer carried, by meter id in ``remembered`` (a running gateway's :meth:`MeterIdentities.read_ahead
    <gateway.meter_identity.MeterIdentities.read_ahead>`; the command line's, read from its spool:
    gateway.spool_reader), if it is of the ``kind`` the bus's answers carry (``serial number``,
    ``identification``: gateway.meter_identity). A meter it lacks is known by none, and so is one
    remembered with an identity of the other kind (a meter id moved from M-Bus to Modbus, or back;
    an earlier version's row by the kind its shape proves, :func:`~gateway.meter_identity.kind_of`):
    the gateway sets it aside at the meter's next answer, never compared. Before, an M-Bus
    identification equal to a unit's serial number named its meter as that unit's."""
    owners: dict[str, SerialOwner] = {}
    for meter in meters:
        first = None if remembered is None else remembered.get(meter.meter_id)
        if (pinned := _pinned_by(meter)) is not None:
            owners[pinned] = SerialOwner(meter.meter_id, meter.unit_id, pinned=True)
        elif first is not None and kind_of(first) in (None, kind):  # (None: an earlier version's row either can be)
            owners.setdefault(first.identification, SerialOwner(meter.meter_id, meter.unit_id, pinned=False))
    return owners


def unpinned(meters: Iterable[MeterConfig]) -> list[str]:
    """The meter ids of ``meters`` configured with no identity (a serial number, an identification or
    a secondary address): those a scan knows by their first answer's, if one is remembered."""
    return [meter.meter_id for meter in meters if _pinned_by(meter) is None]


def _pinned_by(meter: MeterConfig) -> str | None:
    """The identity ``meter`` is configured with: its serial number (Modbus), else its identification
    or secondary address (M-Bus), else None."""
    return meter.serial_number or meter.identification or meter.secondary_address


def serial_numbers_heard(transport: object) -> MutableMapping[int, str] | None:
    """A Modbus transport's serial number heard last at each unit id (gateway.modbus_transport), None
    for another transport."""
    heard = getattr(transport, "serial_numbers_heard", None)
    return heard if isinstance(heard, dict) else None


@dataclass(frozen=True)
class Found:
    """A unit that answered a scan: what it read, with which profile, and, if the profile reads one,
    its serial number, and the bus's meter known by it (a swap or a moved meter seen in a scan)."""

    unit_id: int
    profile: str
    volume_m3: float
    parameters: dict[str, Any] = field(default_factory=dict)
    serial_number: str | None = None
    owner: SerialOwner | None = None
    note: str | None = None  # without an owner: a configured meter's unit answering with another serial number


async def scan_modbus(
    attempt: Attempt,
    bus: str,
    unit_ids: Iterable[int],
    profile: str = "smart_water_meter",
    parameters: dict[str, Any] | None = None,
    on_problem: Callable[[int, PollError], None] | None = None,
    linger_s: float = 0.0,
    heard: MutableMapping[int, str] | None = None,
    owners: Mapping[str, SerialOwner] | None = None,
) -> list[Found]:
    """``parameters``: what the profile's scale needs (a pulse counter's ``litres_per_pulse``).
    ``on_problem`` is told of each unit that answered but gave no reading (an exception response,
    a wrong CRC, registers the profile does not decode): a device is there, not a meter of this
    profile, or not well. A unit that does not answer is no problem (an empty address).

    ``linger_s``: when the last unit did not answer, the scan listens this long before it ends (the
    failed attempt's port or connection stays open, listening: gateway.late_answers), so that its
    late answer is heard as every other unit's is, during the next unit's request. Before, the bus
    was closed at once after it, and its late answer was lost: a slow meter at the last address
    looked absent, with no hint that a longer timeout would find it.

    ``heard``: the serial number each unit's answer carried (a Modbus transport's
    ``serial_numbers_heard``: :func:`serial_numbers_heard`), for a profile that reads one; ``owners``
    the bus's meters by serial number (:func:`serial_owners`). Each unit found has its serial number,
    and the meter known by it: before, a scan showed no serial number, and a technician pinning meters
    or looking for a swap read labels in a pit."""
    token = _scanning.set(True)
    try:
        found, last_silent = await _scan_modbus(
            attempt, bus, unit_ids, profile, dict(parameters or {}), on_problem, heard, owners or {}
        )
        if last_silent and linger_s > 0:
            await asyncio.sleep(linger_s)
        return found
    finally:
        _scanning.reset(token)


async def _scan_modbus(
    attempt: Attempt,
    bus: str,
    unit_ids: Iterable[int],
    profile: str,
    given: dict[str, Any],
    on_problem: Callable[[int, PollError], None] | None,
    heard: MutableMapping[int, str] | None,
    owners: Mapping[str, SerialOwner],
) -> tuple[list[Found], bool]:
    """The units found, and whether the last one tried did not answer."""
    found = []
    silent = False
    for unit_id in unit_ids:
        probe = MeterConfig(f"{bus}-unit-{unit_id}", unit_id, profile, given)
        silent = False
        if heard is not None:
            heard.pop(unit_id, None)  # (this answer's, not one heard before: a profile may read none)
        try:
            reading = await attempt(probe)
        except LineUnusable:  # no unit answers on a bus that will not open: not "0 meters found"
            raise
        except NoAnswer:
            silent = True
            continue
        except PollError as error:
            if on_problem is not None:
                on_problem(unit_id, error)
            continue
        serial_number = None if heard is None else heard.get(unit_id)
        owner = None if serial_number is None else owners.get(serial_number)
        found.append(Found(unit_id, profile, reading.volume_m3, given, serial_number, owner))
    return found, silent


class LateUnits:
    """A scan's late answers, said once a unit (``on_late`` of the scanned bus's transport, and
    :meth:`quieten` its own warning, which speaks of polls and the bus's ``timeout_s``).

    A unit that answers after the scan's timeout is "no answer" to the scan, as an empty address is:
    not said, and not in the snippet. A technician scanning a bus of slow meters found none, with no
    hint that their answers came; now each such unit is one line, with the cure (``--timeout``).
    Heard when the late answer comes while the scan still listens: on RTU during the next unit's
    request (or before it), on TCP before the next unit's connection opens; after the last unit, for
    as long again as the scan's timeout (:func:`scan_modbus`'s ``linger_s``).
    """

    def __init__(self, say: Callable[[str], None], timeout_s: float, setting: str = "timeout_s"):
        self.say = say
        self.timeout_s = timeout_s
        self.setting = setting
        self.units: list[int] = []

    def __call__(self, unit: int | None) -> None:
        if unit is None or unit in self.units:  # None: an M-Bus E5h no one meter is charged with (a poll's)
            return
        self.units.append(unit)
        self.say(
            f"# unit {unit} answered after the {self.timeout_s:g} s timeout, too late to be read: scan again "
            f"with a longer --timeout (and raise the bus's {self.setting} for the gateway to read it)"
        )

    def in_search(self, selections: Sequence[str], answered: bool = False) -> None:
        """An M-Bus search's late E5h, ``selections`` those left unanswered before it came, or,
        ``answered``, the selection answered last, none left unanswered since (an E5h names no meter:
        gateway.mbus). Before, it was not said: the scan said ``# 0 meters found``."""
        after = selection_answered(selections) if answered else selections_unanswered(selections)
        self.say(
            f"# an acknowledgement (E5h) came after the {self.timeout_s:g} s answer window, after "
            f"{after}: a meter too late to be found; scan again with a longer "
            f"--timeout (and raise the bus's {self.setting} for the gateway to read it)"
        )

    def read_in_search(self, identification: str) -> None:
        """An M-Bus search's read answered after the window, by the meter ``identification`` (its
        answer carries it: gateway.mbus). Before, it was not said, or said as ``# unit 253``."""
        self.say(
            f"# the meter with secondary address {identification} answered after the {self.timeout_s:g} s answer "
            f"window, too late to be found: scan again with a longer --timeout (and raise the bus's {self.setting} "
            "for the gateway to read it)"
        )

    @staticmethod
    def quieten(transport: object) -> None:
        """The transport's late answers counted and told, but not warned of in its own words."""
        late = getattr(transport, "late_answers", None)
        if isinstance(late, LateAnswers):
            late.warn = False


def placeholder_id(bus: str, suffix: str) -> str:
    """A placeholder meter id, ``{bus}-{suffix}``, the bus's name cut so that it stays within the 64
    characters a meter id may have (with a long bus name the snippet did not load back)."""
    return f"{bus[: IDENTIFIER_MAX_LENGTH - len(suffix) - 1]}-{suffix}"


def _serial_number_line(found: Found) -> str:
    """``serial_number = "40000005"``, so that a pasted table pins its meter from the start, with
    the bus's meter known by it, if one is (a pinned one's table is refused by the configuration:
    one serial number, one meter of a bus)."""
    if found.serial_number is None:
        return ""
    if found.serial_number == NOT_SET:  # every such meter answers with it: it pins none
        return (
            "# serial number not set (its register reads 0, or all ones): it cannot be checked, nor pinned by\n"
            "# serial_number; set the meter's own (the one on its label, with the manufacturer's tool)\n"
        )
    line = f'serial_number = "{found.serial_number}"'
    if found.owner is not None:
        line += f"  # {found.owner.said(found.unit_id)}"
    elif found.note is not None:
        line += f"  # {found.note}"
    return line + "\n"


def owner_lines(found: Iterable[Found]) -> list[str]:
    """A line for each unit that answered with the serial number of a meter of the bus configured at
    another unit id: a swap, or a meter moved, seen in the scan's count (``gateway scan``'s stderr)."""
    return [
        f"# unit {f.unit_id} answered with serial number {f.serial_number}, {f.owner.said(f.unit_id)}"
        for f in found
        if f.owner is not None and f.owner.unit_id != f.unit_id
    ]


def mbus_owner_lines(found: Iterable[FoundMBus], owners: Mapping[str, SerialOwner]) -> list[str]:
    """:func:`owner_lines` for an M-Bus search: a meter found at a primary address (its answer's
    A-field) that is not the one the meter of the bus known by its identification is configured at."""
    lines = []
    for f in found:
        owner = owners.get(f.identification)
        if owner is None or f.primary_address is None or owner.unit_id in (SECONDARY, f.primary_address):
            continue
        lines.append(
            f"# primary address {f.primary_address} answered with identification {f.identification}, "
            f"{owner.said(f.primary_address, MBUS_WORDS)}"
        )
    return lines


def snippet(bus: str, found: Iterable[Found]) -> str:
    """``[[meters]]`` tables for the units found (meter ids to be replaced by the utility's own),
    each with its ``serial_number``, if its profile reads one."""
    parts = []
    for f in found:
        meter_id = placeholder_id(bus, f"unit-{f.unit_id}")
        parts.append(
            "[[meters]]\n"
            f'meter_id = "{meter_id}"  # replace with the meter\'s id; it read {f.volume_m3} m3\n'
            f'bus = "{bus}"\n'
            f"unit_id = {f.unit_id}\n"
            f'profile = "{f.profile}"\n'
            + "".join(f"parameters.{k} = {v!r}\n" for k, v in f.parameters.items())
            + _serial_number_line(f)
        )
    return "\n".join(parts)


@dataclass(frozen=True)
class FoundMBus:
    """A meter an M-Bus secondary-address search found, and what its answer (the first telegram of
    a read) said: the volume it reads, or why none (``problem``), and the value of its error flags
    record (VIF FDh 17h), if it sends one."""

    identification: str
    volume_m3: float | None = None
    problem: str | None = None
    error_flags: int | None = None
    #: the primary address its answer's A-field carries (0..250), None for another (FDh: not said)
    primary_address: int | None = None
    note: str | None = None  # what a meter of the bus has to do with it (gateway.scan_configured)


#: a map of an error flags record's bits, as README's "M-Bus alarms" gives it, to show the form
ERROR_FLAGS_EXAMPLE = '["leak", "burst", "", "reverse_flow"]'


def _error_flags_hint(flags: int) -> str:
    """Comment lines for a meter that sends an error flags record: the gateway reads it only by a map
    of its bits to alarms, which the standard leaves to the manufacturer (gateway.mbus.flagged)."""
    bits = [bit for bit in range(flags.bit_length()) if flags >> bit & 1]
    now = f"bit{'s' if len(bits) > 1 else ''} {', '.join(map(str, bits))} set" if bits else "no bit set"
    return (
        f"# it sends an error flags record (now {flags:#x}: {now}); its alarms are read only with a map of\n"
        '# its bits from the meter\'s data sheet, bit 0 first, "" for a bit that is none, e.g.:\n'
        f"# error_flags = {ERROR_FLAGS_EXAMPLE}\n"
    )


def mbus_snippet(bus: str, found: Iterable[FoundMBus]) -> str:
    """``[[meters]]`` tables for M-Bus meters found by a secondary-address search: each with the
    reading it gave, as the Modbus snippet's (or why it gave none), and, for a meter that sends error
    flags, the ``error_flags`` map it needs for its alarms to be read."""
    parts = []
    for f in found:
        said = f"it read {f.volume_m3} m3" if f.volume_m3 is not None else f"it gave no reading: {f.problem}"
        parts.append(
            "[[meters]]\n"
            f'meter_id = "{placeholder_id(bus, f.identification)}"  # replace with the meter\'s id; {said}\n'
            f'bus = "{bus}"\n'
            f'secondary_address = "{f.identification}"'
            + ("" if f.note is None else f"  # {f.note}")
            + "\n"
            + ("" if f.error_flags is None else _error_flags_hint(f.error_flags))
        )
    return "\n".join(parts)
