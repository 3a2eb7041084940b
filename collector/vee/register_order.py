"""Whether a register value a person gives keeps the meter's register in order with its neighbours.

A meter's register only goes forward. A correction typed wrong (1.000 for 480.937, between reads of
480.9 and 481.0) puts a step back and a step up into the series that VEE and detection then explain
as best they can: VEE took the drop for a meter replacement (481.8 m³ of consumption), detection the
rise for a burst of 480,040 L/h. So a person's value is refused when it adds a step back among its
measured neighbours: the reads of the same meter just before and just after it that are not VEE's
estimates (those are estimated again around a person's value, and may lean on the value it corrects).

A step back the neighbours already have is no new one: a rollover (99,999.9 then 0.1), a meter
replaced behind the same endpoint (481.0 then 0.01), a bad read being corrected (0 between 480.9 and
481.0) keep their one step wherever the value between them falls, as long as it falls on one side of
it; a value between them, below the one and above the other, would make it two. A run of bad reads
is mostly corrected one read at a time without a word (a read whose neighbours are still wrong may
have to wait for them). What a person means all the same (a meter exchanged with no reads to show it
yet, a read of a run whose neighbours are still wrong) is confirmed in the request
(``out_of_sequence: "confirmed"``).

A meter's newest read has no read after it to show a typo upward (4809.37 for 480.937): in order, it
was stored, VEE flagged it ``over_max_flow`` and detection could raise a burst of it. So a person's
value with no measured read after it is also refused when the water since the read before it is
more than the meter could pass, as VEE's ``over_max_flow`` judges it (the meter's maximum flow, or
VEE's default where the meter has none, with ``max_flow_slack``): :class:`FasterThanTheMeter`,
confirmable the same way. Between two reads, a value in order cannot be faster than they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise

import numpy as np

from aquami.contracts.reads import utc_iso
from aquami.durations import lasted
from collector.vee.config import VeeConfig
from collector.vee.rules import allowance


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A stored measured reading next to the one a person gives."""

    ts: datetime
    volume_m3: Decimal
    quality: str

    def said(self) -> str:
        return f"{self.volume_m3} m³ at {utc_iso(self.ts)}, {self.quality}"


def steps_back(registers: Sequence[Decimal]) -> int:
    """How many times the register goes down from one value to the next."""
    return sum(1 for earlier, later in pairwise(registers) if later < earlier)


def adds_a_step_back(before: Decimal | None, value: Decimal, after: Decimal | None) -> bool:
    """Whether ``value`` between the registers ``before`` and ``after`` (None: no such neighbour) goes
    back more often than the neighbours alone do."""
    neighbours = [v for v in (before, after) if v is not None]
    around = [v for v in (before, value, after) if v is not None]
    return steps_back(around) > steps_back(neighbours)


class OutOfSequence(ValueError):
    """A person's register value would add a step back among the meter's stored measured reads."""

    title = "Register out of sequence"
    #: what a reading confirmed past it records as the check its person overrode (``quality_overrode``)
    check = "out_of_sequence"

    def __init__(
        self, meter_id: str, ts: datetime, volume_m3: Decimal, before: Neighbour | None, after: Neighbour | None
    ) -> None:
        self.before, self.after = before, after
        wrong = []  # (a value adding a step back is below the one or above the other, or both)
        if before is not None and volume_m3 < before.volume_m3:
            wrong.append("below the reading before it")
        if after is not None and volume_m3 > after.volume_m3:
            wrong.append("above the reading after it")
        around = [f"{side} it: {read.said()}" for side, read in (("before", before), ("after", after)) if read]
        super().__init__(
            f"a register of {volume_m3} m³ for {meter_id!r} at {utc_iso(ts)} is {' and '.join(wrong)} "
            f"({'; '.join(around)}). A meter's register only goes forward, and VEE and detection would count "
            "the step as water (a meter replacement, a burst): check the value, and if it is meant (a meter "
            'exchanged or rolled over, a run of bad reads), send it again with "out_of_sequence": "confirmed"'
        )


def check_in_order(
    meter_id: str, ts: datetime, volume_m3: Decimal, before: Neighbour | None, after: Neighbour | None
) -> None:
    """Raise :class:`OutOfSequence` if ``volume_m3`` at ``ts`` adds a step back between its neighbours."""
    if adds_a_step_back(
        None if before is None else before.volume_m3, volume_m3, None if after is None else after.volume_m3
    ):
        raise OutOfSequence(meter_id, ts, volume_m3, before, after)


@dataclass(frozen=True, slots=True)
class MaxFlow:
    """The flow VEE holds a meter to: its own maximum (``meters.max_flow_m3h``), else VEE's default."""

    m3h: float
    recorded: bool  # the meter's own; False: VEE's default_max_flow_m3h

    @classmethod
    def of(cls, recorded_m3h: Decimal | None, config: VeeConfig) -> MaxFlow:
        if recorded_m3h is None:
            return cls(config.default_max_flow_m3h, recorded=False)
        return cls(float(recorded_m3h), recorded=True)

    def said(self) -> str:
        return f"{self.m3h:g} m³/h" + ("" if self.recorded else " (VEE's default: none is recorded for the meter)")


def faster_than_the_meter(
    before: Neighbour, ts: datetime, volume_m3: Decimal, max_flow: MaxFlow, config: VeeConfig
) -> bool:
    """Whether the water from ``before`` to ``volume_m3`` at ``ts`` is more than the meter can pass,
    exactly as VEE's ``over_max_flow`` rule judges an interval (collector.vee.rules.validate): the
    registers' difference in floating point against :func:`collector.vee.rules.allowance`. For a
    value at or above ``before``: one below it is out of order (:func:`check_in_order`), and VEE
    would count its step back as a rollover's or a replacement's water instead."""
    seconds = (ts - before.ts).total_seconds()
    water = float(volume_m3) - float(before.volume_m3)
    allowed = allowance(np.array([max_flow.m3h]), np.array([seconds]), config)
    return bool(water > allowed[0])


class FasterThanTheMeter(OutOfSequence):
    """A person's value for a meter's newest read implies more water since the read before it than
    the meter passes at its maximum flow: a typo upward (a decimal point in the wrong place) that no
    read after it shows."""

    title = "Register faster than the meter"
    check = "faster_than_the_meter"

    def __init__(self, meter_id: str, ts: datetime, volume_m3: Decimal, before: Neighbour, max_flow: MaxFlow) -> None:
        self.before, self.after = before, None
        self.max_flow = max_flow
        water = volume_m3 - before.volume_m3
        seconds = (ts - before.ts).total_seconds()
        self.flow_m3h = float(water) / (seconds / 3600)
        ValueError.__init__(
            self,
            f"a register of {volume_m3} m³ for {meter_id!r} at {utc_iso(ts)} is {water} m³ above the reading "
            f"before it ({before.said()}): {self.flow_m3h:,.3f} m³/h over {lasted(seconds)}, more than the meter's "
            f"maximum flow of {max_flow.said()}. It is the meter's newest read, with no read after it to show "
            "the step: VEE would flag it over_max_flow and detection could take it for a burst. Check the value "
            '(a decimal point in the wrong place?), and if it is meant, send it again with "out_of_sequence": '
            '"confirmed"',
        )


def check_newest_within_max_flow(
    meter_id: str, ts: datetime, volume_m3: Decimal, before: Neighbour | None, max_flow: MaxFlow, config: VeeConfig
) -> None:
    """Raise :class:`FasterThanTheMeter` if ``volume_m3``, the meter's newest measured read, is
    further above ``before`` than the meter's maximum flow allows."""
    if before is not None and faster_than_the_meter(before, ts, volume_m3, max_flow, config):
        raise FasterThanTheMeter(meter_id, ts, volume_m3, before, max_flow)
