"""What a scan heard at each configured meter's address: its own identity, another meter's, one no
meter of the bus has (the meter exchanged?), or nothing.

A meter is known by an identity: a Modbus meter by its serial number, an M-Bus meter by its
identification (configured with it, pinned; or remembered from its first answer by the gateway:
gateway.meter_identity, read by the command line's scan from its spool: gateway.spool_reader).
Before, a scan said a unit answering with ANOTHER configured meter's serial number (a swap:
gateway.scan.owner_lines), but not a unit answering with a serial number no
meter of the bus has where a meter is configured with another one: the meter there was exchanged,
and nothing told the technician; nor a configured meter's address left silent; and an M-Bus search
said neither, nor an identification configured but not found on the line.

Modbus: only the units the scan tried are said of (first..last). M-Bus: a secondary search covers the
whole line; a meter is placed at its primary address by its answer's A-field (gateway.scan.FoundMBus).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from gateway.config import MeterConfig
from gateway.modbus_identity import NOT_SET
from gateway.scan import MBUS_WORDS, MODBUS_WORDS, SECONDARY, Found, FoundMBus, SerialOwner, Words

F = TypeVar("F", Found, FoundMBus)

#: ``own`` its identity; ``another_meter`` another configured meter's (a swap, said by the owner's
#: lines); ``exchanged`` one no meter of the bus has; ``silent`` no answer; ``problem`` an answer
#: that gave no reading (said as such); ``late`` an answer after the timeout (said as such, with the
#: cure); ``unchecked`` an answer, the meter known by no identity yet (or the profile reads none, or
#: the M-Bus answer did not say its primary address)
Answer = Literal["own", "another_meter", "exchanged", "silent", "problem", "late", "unchecked"]


@dataclass(frozen=True)
class ConfiguredAnswer:
    """What answered at a configured meter's address in a scan."""

    meter_id: str
    address: int | str  # a Modbus unit id, an M-Bus primary address, or an M-Bus secondary address
    answer: Answer
    known_by: str | None = None  # its serial number / identification, configured or remembered
    pinned: bool = False
    answered_with: str | None = None  # the serial number / identification that answered there

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"meter_id": self.meter_id, "address": self.address, "answer": self.answer}
        if self.known_by is not None:
            entry.update(known_by=self.known_by, pinned=self.pinned)
        if self.answered_with is not None:  # (null: a serial number never set)
            entry["answered_with"] = None if self.answered_with == NOT_SET else self.answered_with
        return entry

    def line(self, bus: str, words: Words) -> str | None:
        """The scan's line for this meter (``gateway scan``'s stderr), None where there is nothing
        new to say (its own identity, a swap said already, a problem said already)."""
        how = "configured with it" if self.pinned else "its first answer's"
        if self.answer == "exchanged" and self.answered_with == NOT_SET:
            return (
                f"# {words.address} {self.address} answered with no {words.identity} set (0, or all ones); "
                f"{self.meter_id} is configured there with {self.known_by} ({how}): the meter exchanged for one "
                f"never given its {words.identity}? set the new meter's own, or set {self.meter_id}'s "
                f"{words.address_key}"
            )
        if self.answer == "exchanged":
            return (
                f"# {words.address} {self.address} answered with {words.identity} {self.answered_with}, no meter's "
                f"of {bus}; {self.meter_id} is configured there with {self.known_by} ({how}): the meter exchanged? "
                f'pin the new one ({self.meter_id}\'s {words.identity_key} = "{self.answered_with}") or set '
                f"{self.meter_id}'s {words.address_key}"
            )
        if self.answer != "silent":
            return None
        if isinstance(self.address, str):  # an M-Bus meter by its secondary address
            return (
                f"# secondary address {self.address} was not found on {bus}: {self.meter_id} is configured with it; "
                "the meter exchanged, or not answering?"
            )
        known = "" if self.known_by is None else f" with {self.known_by} ({how})"
        return f"# {words.address} {self.address} did not answer: {self.meter_id} is configured there{known}"

    def note(self, bus: str) -> str:
        """The comment beside the new meter's identity in the snippet, for an ``exchanged`` one."""
        how = "configured with it" if self.pinned else "its first answer's"
        return f"no meter of {bus} has it; {self.meter_id} here is known by {self.known_by} ({how}): exchanged?"


def configured_answers(
    meters: Iterable[MeterConfig],
    owners: Mapping[str, SerialOwner],
    answered: Mapping[int, str | None],
    scanned: Container[int],
    problems: Container[int] = (),
    late: Container[int] = (),
) -> list[ConfiguredAnswer]:
    """For each meter at an address the scan tried (``scanned``; M-Bus meters by secondary address
    are another's: :func:`mbus_configured_answers`): what ``answered`` there (the identity each address
    found answered with, None if not read), against ``owners`` (gateway.scan.serial_owners); ``late``
    the addresses whose answer came after the timeout (said by the scan as such, with the cure)."""
    known = {owner.meter_id: (identity, owner.pinned) for identity, owner in owners.items()}
    said = []
    for meter in meters:
        if meter.secondary_address is not None or meter.unit_id not in scanned:
            continue
        identity, pinned = known.get(meter.meter_id, (None, False))
        heard = answered.get(meter.unit_id)
        answer: Answer
        if meter.unit_id in problems:
            answer = "problem"
        elif meter.unit_id not in answered:
            answer = "late" if meter.unit_id in late else "silent"
        elif heard is None or identity is None:
            answer = "unchecked"
        elif heard == identity:
            answer = "own"
        else:
            answer = "another_meter" if heard in owners else "exchanged"
        said.append(ConfiguredAnswer(meter.meter_id, meter.unit_id, answer, identity, pinned, heard))
    return said


def modbus_configured(
    bus: str,
    meters: Iterable[MeterConfig],
    owners: Mapping[str, SerialOwner],
    found: list[Found],
    scanned: Container[int],
    problems: Container[int],
    late: Container[int] = (),
) -> tuple[list[ConfiguredAnswer], list[Found]]:
    """A Modbus scan's :func:`configured_answers`, and its units found, an exchanged meter's new
    serial number with its note (the snippet's comment)."""
    answered = {f.unit_id: f.serial_number for f in found}
    said = configured_answers(meters, owners, answered, scanned, problems, late)
    return said, _noted(bus, found, said, lambda f: f.unit_id)


def mbus_configured_answers(
    bus: str,
    meters: Iterable[MeterConfig],
    owners: Mapping[str, SerialOwner],
    found: list[FoundMBus],
    late: Container[str] = (),
) -> tuple[list[ConfiguredAnswer], list[FoundMBus]]:
    """An M-Bus search's: each meter by secondary address found or not; each meter on a primary
    address by what answered there (the A-field of the search's answers), or silent if its
    identification was not found either; and the meters found, each noted with the meter of the bus
    known by it or, for a new meter at a configured one's primary address, that one (the snippet's
    comment). ``late``: the identifications whose answer to the search's read came after the window
    (said by the scan as such): their meters are ``late``, not silent."""
    meters = list(meters)
    ids = {f.identification for f in found}
    answered = {f.primary_address: f.identification for f in found if f.primary_address is not None}
    known = {owner.meter_id: identity for identity, owner in owners.items()}
    said = []
    for meter in meters:
        if meter.secondary_address is not None:
            answer: Answer = (
                "own" if meter.secondary_address in ids else "late" if meter.secondary_address in late else "silent"
            )
            said.append(
                ConfiguredAnswer(meter.meter_id, meter.secondary_address, answer, meter.secondary_address, True)
            )
    on_primary = [m for m in meters if m.secondary_address is None]
    # a primary address no answer said: silent if its identity was not found either, else not placed
    unplaced = {m.unit_id for m in on_primary if m.unit_id not in answered and known.get(m.meter_id) in ids}
    late_at = {m.unit_id for m in on_primary if known.get(m.meter_id) in late}
    for entry in configured_answers(on_primary, owners, answered, range(SECONDARY), (), late_at):
        said.append(replace(entry, answer="unchecked") if entry.address in unplaced else entry)
    noted = _noted(bus, found, said, lambda f: f.primary_address)
    for i, f in enumerate(noted):
        owner = owners.get(f.identification)
        if f.note is None and owner is not None:
            noted[i] = replace(
                f, note=owner.said(SECONDARY if f.primary_address is None else f.primary_address, MBUS_WORDS)
            )
    return said, noted


def _noted(bus: str, found: list[F], said: list[ConfiguredAnswer], address: Callable[[F], int | None]) -> list[F]:
    """``found``, each that is an exchanged meter's new one with its note."""
    exchanged = {a.address: a for a in said if a.answer == "exchanged"}
    return [replace(f, note=exchanged[at].note(bus)) if (at := address(f)) in exchanged else f for f in found]


def lines(bus: str, said: Iterable[ConfiguredAnswer], words: Words = MODBUS_WORDS) -> list[str]:
    """``gateway scan``'s stderr lines for the configured meters (:meth:`ConfiguredAnswer.line`)."""
    return [line for a in said if (line := a.line(bus, words)) is not None]
