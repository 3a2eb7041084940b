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

Where an interval begins (:meth:`SendIntervals.heard`, :meth:`SendIntervals.next_after`): at the
meter's last telegram heard, and it ends a grace (:data:`GRACE`, a quarter of the interval) after its
length; unheard, the next begins where it ended and lasts the interval alone. Before, the next
interval began at the check that ended the last (``now``), late by up to a check period each time:
the boundaries walked through the meter's send times. A meter sending exactly every interval never
fell in the gap (each interval, at least its length, held a telegram), but one whose send times
stray, as OMS asks of meters (the simulator's ±2 % a send, its phase a random walk), had an interval
with no telegram in it, a failed poll, whenever a boundary crossed a send time, and the next held
two: 8 in 1,000 intervals with a check each interval, 5 with a check each minute
(``benchmarks/wmbus_interval_drift.py``). Anchoring each interval to the end of the one before (a
fixed grid) takes the drift away but not the failures (8 and 5 again): the meter's send times wander
across the grid's boundaries, and a boundary sitting on them fails again and again. Anchored to the
telegram heard, the next boundary is the interval and its grace after the meter's last send,
wherever its phase has wandered: a meter sending once per interval, each telegram less than the
grace late, is never counted silent (0 in 1,000), and one that stops is counted at the first check
after its next telegram was due plus the grace (1.25 intervals at worst with a check each interval,
within the bound of one interval and a check period), then once per interval. A meter's first
interval, from its listener's first check, has no grace: its meter's phase is unknown there.

The times are the monotonic clock's, as the listener's checks; a gateway restart begins every
interval afresh (the memory is the running gateway's, not the spool's).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aquami.contracts.reads import utc_iso

#: How late a meter's telegram may come, as a share of its send interval, before its interval ends
#: unheard: OMS meters vary their send times so that two do not collide on every transmission (the
#: simulator ±2 % a send), and a meter's clock runs a little fast or slow; a quarter of the interval
#: takes any of it, and a meter that stops is still counted silent within its next interval.
GRACE = 0.25


@dataclass
class SendInterval:
    """One meter's current send interval: when it began (monotonic seconds), how long it is, and the
    receiver's counts then (its telegrams, for the ids heard since; its noise bytes, for the bytes
    dropped since). One that began at a telegram heard waits for the next with :data:`GRACE` more;
    one that began at the meter's first check, or where an unheard one ended, the interval alone."""

    began: float
    length_s: float
    telegrams_at: int
    noise_at: int
    grace: bool = True

    @property
    def ends(self) -> float:
        return self.began + self.length_s * (1 + GRACE if self.grace else 1)


@dataclass
class SendIntervals:
    """The meters' current send intervals on one receiver, and why a telegram failed in each."""

    current: dict[str, SendInterval] = field(default_factory=dict)  # by meter id
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
        """``meter_id``'s first interval begins ``now``, its listener's first check (a telegram heard
        before began one already), and lasts the interval alone: a meter heard in it takes its grace
        from its telegram on, and one never heard is said silent one interval after the check."""
        interval = self.current[meter_id] = SendInterval(now, length_s, telegrams, noise, grace=False)
        return interval

    def heard(self, meter_id: str, at: float, length_s: float, telegrams: int, noise: int) -> None:
        """``meter_id`` was heard ``at`` (monotonic seconds): its next interval begins there, so its
        boundary follows the meter's send times wherever they wander, and what failed before is
        no longer why it is silent."""
        self.current[meter_id] = SendInterval(at, length_s, telegrams, noise)
        self.failed.pop(meter_id, None)
        self.failed_before_reload.discard(meter_id)

    def next_after(self, meter_id: str, now: float, telegrams: int, noise: int) -> SendInterval:
        """``meter_id``'s interval ended unheard, seen at the check ``now``: the next begins where it
        ended (not at ``now``, which would make each silent interval late by up to a check period),
        and lasts the interval alone, its grace given already. One that ended a whole interval or
        more before ``now`` (shortened at a reload, long run out) is one silent interval: the next
        begins ``now``, not a run of intervals already over, each said at a check of its own."""
        ended = self.current[meter_id]
        began = ended.ends if now < ended.ends + ended.length_s else now
        interval = self.current[meter_id] = SendInterval(began, ended.length_s, telegrams, noise, grace=False)
        return interval

    def outcome(self, meter_id: str) -> str | None:
        """Why a telegram of ``meter_id`` failed in the interval that ends unheard, if one did;
        cleared for the next."""
        self.failed_before_reload.discard(meter_id)
        return self.failed.pop(meter_id, None)


def failed_before(why: str, reload_at: datetime) -> str:
    """``why`` a meter's telegram failed, said at the end of an interval that a reload changing its
    entry (id, manufacturer or key) came into, nothing heard from it since: what is true now first."""
    return (
        f"no telegram heard from it since the reload at {utc_iso(reload_at)}, which changed its id, manufacturer "
        f"or key; before it, with the entry then: {why}"
    )
