"""The retained ``status/health`` MQTT message: a gateway's health, and its JSON Schema.

The gateway builds it (:meth:`gateway.health.Health.snapshot`, with the service's counters); a
head-end reads it. ``status`` beside it is the bare word ``online`` or ``offline``, not JSON.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema.protocols import Validator

from aquami.contracts.schema_files import ContractValidator, breaches, load_schema

__all__ = ["schema_errors", "status_schema", "status_validator"]


@cache
def status_schema() -> dict[str, Any]:
    return load_schema("status.schema.json")


@cache
def status_validator() -> Validator:
    return ContractValidator(status_schema())


def schema_errors(message: Any) -> list[str]:
    """Every way ``message`` breaks the contract, as ``path: reason`` lines (empty when valid)."""
    return breaches(status_validator(), message)
