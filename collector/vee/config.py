"""VEE thresholds: configuration with defaults, checked up front so a wrong key is named."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class VeeConfig:
    expected_interval_s: int = 3600  # a new meter's grid until it has interval_min_steps steps; no gaps till then
    interval_min_steps: int = 3  # steps between actual reads a meter needs for its own interval
    interval_change_steps: int = 4  # this many consecutive steps at one interval: the meter reads at it (intervals.py)
    gap_factor: float = 1.5  # a gap: more than this many expected intervals between reads
    default_max_flow_m3h: float = 5.0  # when the meter has none: above Q4 of a DN15/DN20 meter
    # Tolerance on max flow before flagging (over_max_flow, and how fast a rollover, reverse flow or
    # bad read could have been; estimation spreads a gap's water up to it where it needs more than
    # the maximum flow, so the gaps it estimates linearly are those over_max_flow flags): a meter
    # at its top flow (Q4) may register up to 2 % over the water
    # that passed (3 % above 30 °C: ISO 4064-1 / OIML R49 upper-zone error, accuracy class 2), and an
    # interval's rise is known only to a register digit: 10 L of a 5-minute interval's 0.260 m³ at a
    # DN15 meter's Q4 (3.125 m³/h) is 3.8 %. At 0 a meter running at its rated flow, within its
    # legal error, is flagged and its bill line made incomplete. The gateway's pulse counters use
    # the same (gateway.pulse.MAX_FLOW_SLACK).
    max_flow_slack: float = 0.05
    default_register_capacity_m3: float = 100_000.0  # 5-digit m³ register: rolls over to 0 at 100 000
    rollover_window: float = 0.1  # rollover: from the top 10 % of the register into the bottom 10 %
    replacement_max_start_m3: float = 10.0  # a new meter's register starts near zero
    replacement_min_previous_m3: float = 20.0  # and the register it replaces was well above that
    reverse_tolerance_m3: float = 0.002  # reverse register must grow by the drop, within this
    backwards_tolerance_m3: float = 0.0005  # smaller drops are resolution noise, not a step back
    stuck_min_flow_m3h: float = 0.005  # flow above this with an unchanged register: stuck
    stuck_min_reads: int = 3  # for at least this many consecutive reads
    future_tolerance_s: int = 300  # clocks drift; more than this ahead of now is wrong
    max_age_days: int = 400  # a read this much older than its arrival is wrong
    linear_max_gap_s: int = 6 * 3600  # gaps up to this are interpolated linearly; longer use the profile
    max_estimated_gap_s: int = 62 * 86400  # longer gaps are left for a person (a site visit)
    profile_lookback_days: int = 28  # history used for the meter's own hour-of-week profile
    estimate_decimals: int = 3  # litres
    batch_meters: int = 2000  # a round loads, validates, estimates and writes this many meters at a time

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> VeeConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown VEE setting(s): {', '.join(unknown)}; known: {', '.join(known)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            kind = int if known[name].type in ("int", int) else float
            try:
                converted[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"VEE setting {name}: {value!r} is not a {kind.__name__}") from None
            if converted[name] < 0:
                raise ValueError(f"VEE setting {name}: must not be negative, got {value!r}")
        return cls(**converted)
