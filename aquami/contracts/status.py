"""The retained ``status/health`` MQTT message: a gateway's health, and its JSON Schema.

The gateway builds it (:meth:`gateway.health.Health.snapshot`, with the service's counters); a
head-end reads it. ``status`` beside it is the bare word ``online`` or ``offline``, not JSON.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["schema_errors", "status_schema", "status_validator"]


@cache
def status_schema() -> dict[str, Any]:
    text = resources.files("aquami.contracts").joinpath("status.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def status_validator() -> Draft202012Validator:
    return Draft202012Validator(status_schema())


def schema_errors(message: Any) -> list[str]:
    """Every way ``message`` breaks the contract, as ``path: reason`` lines (empty when valid)."""
    errors = []
    for error in sorted(status_validator().iter_errors(message), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    return errors
