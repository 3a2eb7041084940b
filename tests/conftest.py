"""Shared fixtures. The real-service fixtures live in tests/services.py; this file only declares them."""

from tests.services import (
    database_url,
    fresh_mosquitto,
    migrated_database_url,
    mosquitto,
    timescale_admin_url,
)

__all__ = [
    "database_url",
    "fresh_mosquitto",
    "migrated_database_url",
    "mosquitto",
    "timescale_admin_url",
]
