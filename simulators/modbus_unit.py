"""What a Modbus simulator (TCP or RTU) needs of a meter: its unit id, its profile, its registers now;
and the serial number a simulated meter carries unless it is given one."""

from __future__ import annotations

import zlib
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


def serial_number_for(meter_id: str) -> str:
    """A simulated meter's serial number, derived from its id: 8 digits (10000000..99999999, within a
    u32 register), the same at every run (CRC-32, not Python's salted ``hash``), so a rig restarted
    serves the serial numbers a gateway remembered. Another id gives another number, all but always:
    a test that needs two to differ gives them."""
    return str(10_000_000 + zlib.crc32(meter_id.encode("utf-8")) % 90_000_000)
