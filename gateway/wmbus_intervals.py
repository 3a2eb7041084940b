"""Each wireless M-Bus meter's current send interval, kept across the listeners a reload makes anew.

A wireless meter is heard, never polled: its receiver's listener counts a failed poll for each send
interval (the meter's ``poll_interval_s``, or its bus's) that ends without a telegram, and that is how
a silent meter goes offline. The interval's end lived in the listener, which a reload of the gateway's
configuration makes anew: each reload began every meter's interval again. A meter that stopped sending
was said silent one interval late, and with the configuration pushed more often than the meter's
interval (every 10 minutes, a meter sending every 15) never at all. The receiver's memory
(:class:`gateway.wmbus_unconfigured.ReceiverMemory`) now holds each meter's interval:

- a meter still configured on the same receiver with the same interval keeps it, with what the
  interval holds so far (heard in it, or why a telegram of it failed), so a reload neither delays a
  silent meter nor makes a heard one look silent;
- a meter whose interval changed keeps the start of its current one, which takes the new length: a
  longer interval gives it the longer wait; a shorter one that has run out already, with nothing
  heard since it began, ends at the listener's next check (one silent interval, not several);
- a meter newly configured begins its interval at the listener's first check; one no longer
  configured on the receiver is forgotten (configured again later, it begins afresh);
- why a telegram of the meter failed before a reload that changed its id, manufacturer or key (a
  key typed wrong, corrected) is no longer why its telegrams fail: unheard since, its interval ends
  saying so, ``no telegram heard from it since the reload at …, which changed its id, manufacturer
  or key; before it, with the entry then: …``. Before, it ended saying the old reason alone, as if
  the key just corrected were still wrong. A telegram that fails after the reload gives its own
  reason, and one heard, none.

The times are the monotonic clock's, as the listener's checks; a gateway restart begins every
interval afresh (the memory is the running gateway's, not the spool's).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aquami.contracts.reads import utc_iso


@dataclass
class SendInterval:
    """One meter's current send interval: when it began (monotonic seconds), how long it is, and the
    receiver's counts then (its telegrams, for the ids heard since; its noise bytes, for the bytes
    dropped since)."""

    began: float
    length_s: float
    telegrams_at: int
    noise_at: int

    @property
    def ends(self) -> float:
        return self.began + self.length_s


@dataclass
class SendIntervals:
    """The meters' current send intervals on one receiver, and what each holds so far."""

    current: dict[str, SendInterval] = field(default_factory=dict)  # by meter id
    #: meters heard in their current interval (or before their first began): nothing to say at its end
    heard: set[str] = field(default_factory=set)
    #: why a meter's telegram failed in its current interval (a wrong key): said at its end if unheard
    failed: dict[str, str] = field(default_factory=dict)
    #: the meters whose reason in :attr:`failed` is from before a reload that changed their entry
    failed_before_reload: set[str] = field(default_factory=set)

    def configured(self, lengths: Mapping[str, float], changed: Collection[str], at: datetime) -> None:
        """A listener starts for the meters in ``lengths`` (meter id: its send interval in seconds):
        forget the others, and give an interval whose length changed its new length from its start.
        ``changed``: the meters whose id, manufacturer or key changed at this reload, at ``at`` (UTC):
        why a telegram of theirs failed before is said as such (:func:`failed_before`)."""
        for meter_id in [m for m in self.current if m not in lengths]:
            del self.current[meter_id]
        self.heard &= lengths.keys()
        for meter_id in [m for m in self.failed if m not in lengths]:
            del self.failed[meter_id]
        self.failed_before_reload &= self.failed.keys()
        for meter_id in [m for m in changed if m in self.failed and m not in self.failed_before_reload]:
            self.failed[meter_id] = failed_before(self.failed[meter_id], at)
            self.failed_before_reload.add(meter_id)
        for meter_id, interval in self.current.items():
            interval.length_s = lengths[meter_id]

    def fail(self, meter_id: str, why: str) -> None:
        """A telegram of ``meter_id`` failed in its current interval: ``why`` is said at its end if it is
        not heard meanwhile (the last reason given wins)."""
        self.failed[meter_id] = why
        self.failed_before_reload.discard(meter_id)

    def begin(self, meter_id: str, now: float, length_s: float, telegrams: int, noise: int) -> SendInterval:
        """``meter_id``'s next interval begins ``now`` (what the last one held is the caller's to take
        first: a telegram heard before a meter's first interval began counts in it)."""
        interval = self.current[meter_id] = SendInterval(now, length_s, telegrams, noise)
        return interval

    def outcome(self, meter_id: str) -> tuple[bool, str | None]:
        """Whether ``meter_id`` was heard in the interval that ends, and why a telegram of it failed
        meanwhile; both cleared for the next."""
        heard = meter_id in self.heard
        self.heard.discard(meter_id)
        self.failed_before_reload.discard(meter_id)
        return heard, self.failed.pop(meter_id, None)


def failed_before(why: str, reload_at: datetime) -> str:
    """``why`` a meter's telegram failed, said at the end of an interval that a reload changing its
    entry (id, manufacturer or key) came into, nothing heard from it since: what is true now first."""
    return (
        f"no telegram heard from it since the reload at {utc_iso(reload_at)}, which changed its id, manufacturer "
        f"or key; before it, with the entry then: {why}"
    )
