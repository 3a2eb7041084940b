"""What the running rig keeps of each meter and of each fault in force: :class:`RigMeter`, :class:`ActiveFault`.

Why a module of their own: the rig (:mod:`.runner`) makes them and a technician's work
(:mod:`.meter_work`) reads and changes them; here, both import them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aquami.contracts.reads import utc_iso
from simulators.inlet_model import InletMeterModel
from simulators.meter_model import MeterModel
from simulators.rig.config import MeterConfig
from simulators.rig.faults import FaultSpec, LivePlan
from simulators.rig.state import FaultRecord

#: said of a water fault cleared before the meter's next step, where it would have begun
NEVER_TOOK_EFFECT = "cleared before the meter's next step (its since): it never took effect, the water did not change"
#: said of a fault cleared after its ``duration_s`` ended it (a technician's work: undone then)
OVER_BY_ITSELF = "over by itself at its until (its duration_s): nothing was left to clear"


@dataclass
class RigMeter:
    """A meter of the rig file on its transport; ``fault_address`` (where its wire faults act),
    ``last_request``, ``register`` and ``where`` follow a technician's work on it."""

    config: MeterConfig
    protocol: str
    model: MeterModel | InletMeterModel
    fault_address: int
    plan: LivePlan
    last_request: Callable[[], datetime | None]
    register: Callable[[datetime], str]
    where: str = ""


@dataclass
class ActiveFault:
    """A fault in force: what the endpoint answers of it, and how to end it (``clear``)."""

    fault_id: int
    meter_id: str
    spec: FaultSpec
    since: datetime
    clear: Callable[[datetime], datetime | None]  # ends it at the given time; returns its end as applied
    until: datetime | None = None
    record: FaultRecord | None = None  # what the state file keeps of it
    done: str = ""  # a technician's work: what the rig did (put back, once cleared)
    #: ended by itself at its ``until`` before any clear (a technician's work: undone then, once);
    #: kept until cleared, as every fault is (across a restart too), so that its clear answers it
    #: as over, not "no fault"
    over: bool = False

    def involves(self, meter_id: str) -> bool:
        """Whether the fault is ``meter_id``'s: its own, or the other meter of a swap."""
        return meter_id in (self.meter_id, self.spec.with_meter)

    @property
    def never_took_effect(self) -> bool:
        """A water fault cleared before the meter's next step, where it would have begun: its
        ``since`` and ``until`` are that step, and the water never changed."""
        in_the_water = not (self.spec.is_wire or self.spec.is_work)
        return in_the_water and self.until is not None and self.until <= self.since

    def to_json(self) -> dict[str, Any]:
        """The endpoint's answer for this fault, its times in UTC with a ``Z`` as everywhere else."""
        answer: dict[str, Any] = {
            "id": self.fault_id,
            "meter": self.meter_id,
            "since": utc_iso(self.since),
            "until": None if self.until is None else utc_iso(self.until),
            **self.spec.to_json(),
        }
        if self.never_took_effect:
            answer["note"] = NEVER_TOOK_EFFECT
        elif self.over:
            answer["note"] = OVER_BY_ITSELF
        if self.done:
            answer["done"] = self.done
        return answer
