"""The unconfigured senders a wireless M-Bus receiver hears, and those that look like a configured
meter's identification typed wrong.

A neighbour's meter in range is ignored, rightly. But a meter whose id was typed wrong in the
gateway's file (77000001 for 77000010) went offline saying only that nothing was heard from it in its
send interval, while the receiver heard the real meter's telegrams under an id no meter is configured
with; the only sign was a count of unknown meters, shown nowhere. The listener remembers who it heard
(a bounded number: a city street has hundreds of neighbours' meters) and, for a silent meter, names
the water meters heard meanwhile whose id is one digit off its own, or two neighbouring digits
swapped, of its manufacturer where one is configured, or its very id from another manufacturer than
the one configured. Nothing is taken from them: they are only named as a hint.

What the receiver heard outlives its listener (:class:`ReceiverMemory`, held by the gateway per
receiver device): a reload of the gateway's configuration makes the buses anew, and before, it
forgot every sender heard, so the silent interval after it named none of those heard before it
(the interval the reload cut short among them), and ``unconfigured_ids_heard`` fell to 0. Each
meter's send interval under way is kept there too, so a reload no longer cuts it short
(:mod:`gateway.wmbus_intervals`), and so are the episodes said once while they last and the lines
said once per meter (:mod:`gateway.wmbus_said`), and the telegrams taken lately, so a repeater's copy
heard just after a reload is still a duplicate (:mod:`gateway.wmbus_duplicates`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from firmware_protocols.mbus.header import WATER_METER_TYPES
from firmware_protocols.wmbus.telegram import MeterAddress
from gateway.config import MeterConfig
from gateway.wmbus_duplicates import DuplicateFilter
from gateway.wmbus_intervals import SendIntervals
from gateway.wmbus_said import ReceiverSayings

#: Senders remembered at most, the least recently heard forgotten first.
MAX_REMEMBERED = 1024
#: Close ids named in one hint at most.
MAX_NAMED = 3


def mistypings(ident: str) -> set[str]:
    """Every id :func:`looks_mistyped` takes for ``ident`` typed wrong (79 for 8 digits): looked up,
    not searched for among the senders remembered (1.8 ms a silent meter over 1,024 senders)."""
    found = {ident[:at] + digit + ident[at + 1 :] for at in range(len(ident)) for digit in "0123456789"}
    found |= {ident[:at] + ident[at + 1] + ident[at] + ident[at + 2 :] for at in range(len(ident) - 1)}
    found.discard(ident)
    return found


def looks_mistyped(configured: str, heard: str) -> bool:
    """Whether ``heard`` is ``configured`` with one digit different or two neighbouring digits
    swapped (the two slips of a technician typing an 8-digit id); not the same id."""
    if len(configured) != len(heard) or configured == heard:
        return False
    differ = [i for i, (a, b) in enumerate(zip(configured, heard, strict=True)) if a != b]
    if len(differ) == 1:
        return True
    if len(differ) != 2 or differ[1] != differ[0] + 1:
        return False
    first, second = differ
    return configured[first] == heard[second] and configured[second] == heard[first]


class UnconfiguredSenders:
    """The unconfigured senders heard, each with when it was last heard (the listener's telegram
    count then), at most ``limit`` of them, the least recently heard forgotten first."""

    def __init__(self, limit: int = MAX_REMEMBERED):
        self.limit = limit
        self._heard: dict[tuple[str, str], tuple[MeterAddress, int]] = {}  # (id, manufacturer): least recent first
        self._makes: dict[str, set[str]] = {}  # each id remembered: the manufacturers heard with it

    def __len__(self) -> int:
        return len(self._heard)

    def heard(self, address: MeterAddress, at: int) -> None:
        """``address`` sent a telegram, the listener's ``at``-th."""
        key = (address.id, address.manufacturer)
        self._heard.pop(key, None)
        self._heard[key] = (address, at)
        self._makes.setdefault(address.id, set()).add(address.manufacturer)
        while len(self._heard) > self.limit:
            self._forget(*next(iter(self._heard)))

    def forget_configured(self, meters: Iterable[MeterConfig]) -> None:
        """Forget the senders that are now ``meters``' own (their id, from a water meter of their
        ``manufacturer`` where one is configured): an id corrected at a reload is no longer unconfigured."""
        for meter in meters:
            ident = meter.wmbus_id
            for make in list(self._makes.get(ident or "", ())):
                address, _ = self._heard[ident, make]  # type: ignore[index]
                if address.device_type in WATER_METER_TYPES and meter.manufacturer in (None, make):
                    self._forget(address.id, make)

    def _forget(self, ident: str, make: str) -> None:
        del self._heard[ident, make]
        self._makes[ident].discard(make)
        if not self._makes[ident]:
            del self._makes[ident]

    def close_to(self, meter: MeterConfig, since: int) -> list[MeterAddress]:
        """The water meters heard after the listener's ``since``-th telegram whose id looks like
        ``meter``'s typed wrong (of its manufacturer, where one is configured), or that carry its id
        from another manufacturer than the one configured; most recently heard first."""
        ident = meter.wmbus_id
        if ident is None:
            return []
        heard = [self._heard[i, make] for i in {ident} | mistypings(ident) for make in self._makes.get(i, ())]
        found = []
        for address, at in sorted(heard, key=lambda entry: entry[1], reverse=True):
            if at <= since or address.device_type not in WATER_METER_TYPES:
                continue
            other_make = meter.manufacturer not in (None, address.manufacturer)
            if (address.id == ident and other_make) or (not other_make and address.id != ident):
                found.append(address)
        return found


@dataclass
class ReceiverMemory:
    """What a receiver heard, kept across the listeners a reload makes anew: the unconfigured senders,
    the telegrams it handed on (the clock :class:`UnconfiguredSenders` marks them with), the bytes
    its listeners dropped as noise, each meter's current send interval
    (:mod:`gateway.wmbus_intervals`), what its listeners said once (:mod:`gateway.wmbus_said`) and
    the telegrams they took lately (:mod:`gateway.wmbus_duplicates`): a reload neither begins a
    meter's interval again nor forgets what it holds, the first interval after a reload names the
    close ids heard since the last interval ended before it, a warning said before a reload is not
    said again after it, and a repeater's copy of a telegram taken before it is dropped after it."""

    senders: UnconfiguredSenders = field(default_factory=UnconfiguredSenders)
    telegrams: int = 0
    #: bytes dropped as noise by the receiver's parsers no longer reading (listeners before a reload,
    #: a parser replaced as the receiver was reopened): a listener's count carries on from it
    noise_bytes: int = 0
    intervals: SendIntervals = field(default_factory=SendIntervals)
    said: ReceiverSayings = field(default_factory=ReceiverSayings)
    #: its window is the bus's ``duplicate_window_s``, set by each listener (a reload's change applies)
    duplicates: DuplicateFilter = field(default_factory=lambda: DuplicateFilter(0.0))

    def listened_to(self, meters: Iterable[MeterConfig], interval_s: Mapping[str, float], at: datetime) -> None:
        """A listener for ``meters``, each sending every ``interval_s[meter id]`` seconds, starts at
        ``at`` (UTC): forget the senders now configured, and the intervals of meters no longer on the
        receiver (one configured again later starts its interval afresh); one whose length changed
        takes it. What was said of a meter no longer configured, or said once of one whose id,
        manufacturer or key changed, is forgotten, with the telegrams taken from it
        (:mod:`gateway.wmbus_said`); why a telegram of the latter failed in its current interval is
        said as from before this reload (:func:`gateway.wmbus_intervals.failed_before`)."""
        meters = list(meters)
        self.senders.forget_configured(meters)
        anew = self.said.listened_to(meters)
        self.intervals.configured(interval_s, anew, at)
        self.duplicates.forget(anew)


def mistyped_hint(meter: MeterConfig, close: list[MeterAddress]) -> str:
    """What a silent meter's health adds when the receiver hears ids close to its own:
    ``the receiver hears 77000010 (KAM), not configured: is the id 77000001 mistyped?``."""
    same_id = [a for a in close if a.id == meter.wmbus_id]
    other_ids = [a for a in close if a.id != meter.wmbus_id]
    hints = []
    if other_ids:
        named = ", ".join(f"{a.id} ({a.manufacturer})" for a in other_ids[:MAX_NAMED])
        more = f" and {len(other_ids) - MAX_NAMED:,} more" if len(other_ids) > MAX_NAMED else ""
        hints.append(f"the receiver hears {named}{more}, not configured: is the id {meter.wmbus_id} mistyped?")
    if same_id:
        makes = ", ".join(a.manufacturer for a in same_id[:MAX_NAMED])
        hints.append(
            f"the receiver hears its id {meter.wmbus_id} from a water meter of {makes}, not of {meter.manufacturer} "
            "as configured: is the manufacturer mistyped?"
        )
    return "; ".join(hints)
