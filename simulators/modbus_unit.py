"""What a Modbus simulator (TCP or RTU) needs of a meter: its unit id, its profile, its registers now."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from firmware_protocols.modbus import MeterProfile


class RegisterSource(Protocol):
    """A meter on a Modbus bus (``SmartMeter`` and ``ModelledMeter`` are two)."""

    @property
    def unit_id(self) -> int: ...

    @property
    def profile(self) -> MeterProfile: ...

    def registers_at(self, at: datetime) -> list[int]:
        """Every register of the profile's blocks, blocks in order (``MeterProfile.encode``)."""
        ...


def register_addresses(profile: MeterProfile) -> list[int]:
    """The address of each value ``profile.encode`` returns (its blocks, concatenated in order)."""
    return [a for block in profile.blocks for a in range(block.start, block.start + block.count)]
