"""The ``events`` MQTT message: one thing a gateway saw happen, and its JSON Schema.

One event per message on ``{root}/{gateway_id}/events`` (QoS 1, not retained): ``gateway_id``,
``event`` (one of :data:`EVENT_NAMES`), ``ts`` (ISO 8601 UTC) and the fields that event carries.
Meter events (:data:`METER_EVENTS`) name ``meter_id`` and ``bus``; gateway events
(:data:`GATEWAY_EVENTS`: the spool's limit, and ``gateway_stopped``, spooled as the gateway stops
and delivered then or after its next start) name neither. The gateway builds them
(:mod:`gateway.health`, :mod:`gateway.service`), the collector validates them
(:mod:`collector.events_parser`); the schema file beside this module is the single definition.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema.protocols import Validator

from aquami.contracts.reads import events_topic
from aquami.contracts.schema_files import ContractValidator, breaches, load_schema

METER_EVENTS = ("meter_offline", "meter_online")
GATEWAY_EVENTS = ("spool_overflow", "spool_full", "spool_resumed", "gateway_stopped", "spool_damaged")
EVENT_NAMES = METER_EVENTS + GATEWAY_EVENTS
# The envelope; every other field of an event is its detail.
ENVELOPE_FIELDS = ("gateway_id", "event", "ts", "meter_id")
# Fields holding a time; the schema's pattern admits 2026-13-40, so a reader also checks the calendar.
TIME_FIELDS = ("ts", "last_good", "offline_since")

__all__ = [
    "ENVELOPE_FIELDS",
    "EVENT_NAMES",
    "GATEWAY_EVENTS",
    "METER_EVENTS",
    "TIME_FIELDS",
    "events_schema",
    "events_topic",
    "events_validator",
    "schema_errors",
]


@cache
def events_schema() -> dict[str, Any]:
    return load_schema("events.schema.json")


@cache
def events_validator() -> Validator:
    return ContractValidator(events_schema())


def schema_errors(message: Any) -> list[str]:
    """Every way ``message`` breaks the contract, as ``path: reason`` lines (empty when valid)."""
    return breaches(events_validator(), message)
