"""Modbus register maps of meters, as declarative TOML profiles decoded with Construct."""

from firmware_protocols.modbus.profile import (
    MeterProfile,
    RegisterBlock,
    RegisterField,
    available_profiles,
    load_profile,
)

__all__ = ["MeterProfile", "RegisterBlock", "RegisterField", "available_profiles", "load_profile"]
