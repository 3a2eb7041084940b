"""Faults on the wire, as data: which replies go missing, arrive late, cut short or corrupted.

A transport (serial line, TCP server) asks :meth:`WireFaultPlan.apply` what becomes of each reply
before sending it. Rules are plain records (loadable from JSON), chosen by address, time window and
probability with a seeded random stream, so a run is reproducible; every fault applied is logged, and
the log is the wire-level ground truth a gateway's retry and health logic is scored against.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

from simulators.ground_truth import iso_utc, parse_iso_utc


class WireFaultKind(StrEnum):
    NO_REPLY = "no_reply"  # the request is lost or ignored
    BAD_CHECKSUM = "bad_checksum"  # the frame is whole but its checksum is wrong
    TRUNCATED = "truncated"  # the reply stops part-way
    GARBLED = "garbled"  # some bits of the reply flip (noise)
    SLOW = "slow"  # the reply comes, late
    ABSENT = "absent"  # the meter is gone (powered down, unplugged) for a time window; then back


ALL_KINDS = frozenset(WireFaultKind)
#: Every kind but ``absent``: what is left to apply to an answer once :meth:`WireFaultPlan.absent` said no.
PRESENT_KINDS = ALL_KINDS - {WireFaultKind.ABSENT}


@dataclass(frozen=True)
class WireFault:
    """One rule. ``address`` None means every device on the line; ``limit`` caps how often it fires."""

    kind: WireFaultKind
    address: int | None = None
    probability: float = 1.0
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    delay_s: float = 0.5  # SLOW: added before the reply
    flips: int = 1  # GARBLED: bits flipped

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        for t in (self.start, self.end):
            if t is not None and t.tzinfo is None:
                raise ValueError("start and end must be timezone-aware UTC")

    def matches(self, address: int | None, now: datetime) -> bool:
        if self.address is not None and address != self.address:
            return False
        if self.start is not None and now < self.start:
            return False
        return self.end is None or now < self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "address": self.address,
            "probability": self.probability,
            "start": None if self.start is None else iso_utc(self.start),
            "end": None if self.end is None else iso_utc(self.end),
            "limit": self.limit,
            "delay_s": self.delay_s,
            "flips": self.flips,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WireFault:
        known = {"kind", "address", "probability", "start", "end", "limit", "delay_s", "flips"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"wire fault: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(
            kind=WireFaultKind(d["kind"]),
            address=d.get("address"),
            probability=float(d.get("probability", 1.0)),
            start=_time(d, "start"),
            end=_time(d, "end"),
            limit=d.get("limit"),
            delay_s=float(d.get("delay_s", 0.5)),
            flips=int(d.get("flips", 1)),
        )


def _time(d: dict[str, Any], key: str) -> datetime | None:
    """A rule's ``start`` or ``end``, read as a stored time is (:func:`parse_iso_utc`); the error names the key."""
    if not d.get(key):
        return None
    try:
        return parse_iso_utc(d[key])
    except ValueError as error:
        raise ValueError(f"wire fault: {key}: {error}") from None


@dataclass(frozen=True)
class AppliedWireFault:
    at: datetime
    address: int | None
    kind: WireFaultKind


@dataclass(frozen=True)
class Outcome:
    """What goes on the wire: ``reply`` None means nothing at all, after ``delay_s`` extra seconds."""

    reply: bytes | None
    delay_s: float = 0.0
    applied: tuple[WireFaultKind, ...] = ()


def flip_last_byte(frame: bytes) -> bytes:
    """Default checksum corruption: the checksum is at the end of the frame (Modbus RTU CRC)."""
    return frame[:-1] + bytes([frame[-1] ^ 0xFF]) if frame else frame


@dataclass
class WireFaultPlan:
    faults: list[WireFault] = field(default_factory=list)
    seed: int = 0
    log: list[AppliedWireFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng([self.seed, 7])
        self._fired = [0] * len(self.faults)

    @classmethod
    def from_json(cls, rules: Iterable[dict[str, Any]], seed: int = 0) -> WireFaultPlan:
        return cls([WireFault.from_json(r) for r in rules], seed=seed)

    def apply(
        self,
        reply: bytes | None,
        address: int | None,
        now: datetime,
        corrupt_checksum: Callable[[bytes], bytes] = flip_last_byte,
        kinds: Container[WireFaultKind] = ALL_KINDS,
    ) -> Outcome:
        """Apply every rule of ``kinds`` that fires for this reply, in the order given."""
        if reply is None:
            return Outcome(None)
        out: bytes | None = reply
        delay = 0.0
        applied: list[WireFaultKind] = []
        for i, rule in enumerate(self.faults):
            if out is None or rule.kind not in kinds or not rule.matches(address, now):
                continue
            if rule.limit is not None and self._fired[i] >= rule.limit:
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            self._fired[i] += 1
            applied.append(rule.kind)
            self.log.append(AppliedWireFault(now, address, rule.kind))
            if rule.kind in (WireFaultKind.NO_REPLY, WireFaultKind.ABSENT):
                out = None
            elif rule.kind == WireFaultKind.SLOW:
                delay += rule.delay_s
            elif rule.kind == WireFaultKind.BAD_CHECKSUM:
                out = corrupt_checksum(out)
            elif rule.kind == WireFaultKind.TRUNCATED:
                out = out[: int(self._rng.integers(1, max(len(out), 2)))]
            elif rule.kind == WireFaultKind.GARBLED:
                out = self._garble(out, rule.flips)
        return Outcome(out, delay, tuple(applied))

    def absent(self, address: int | None, now: datetime) -> bool:
        """Whether the device at ``address`` is gone for this request: the ``absent`` rules alone, each
        with its probability and limit, and logged when it fires.

        For a bus whose absent devices must not even hear a request (the M-Bus: they do not change
        state); ask once per request and device, then :meth:`apply` the other kinds to its answer.
        """
        return self.apply(b"", address, now, kinds=(WireFaultKind.ABSENT,)).reply is None

    def _garble(self, data: bytes, flips: int) -> bytes:
        b = bytearray(data)
        for bit in self._rng.choice(8 * len(b), size=min(flips, 8 * len(b)), replace=False).tolist():
            b[bit // 8] ^= 1 << (bit % 8)
        return bytes(b)
