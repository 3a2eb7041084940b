"""JSON Schema validation of the MQTT payloads, saying every way a message is wrong.

Readings take the msgspec fast path first (collector/fast_reads.py); this validator explains what
that path refused, and validates ``events`` messages, which are few.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from aquami.contracts.reads import reads_schema


@cache
def events_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files("collector").joinpath("events.schema.json").read_text())
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(reads_schema() if name == "reads" else events_schema())


def schema_errors(name: str, message: Any) -> list[str]:
    """Every way ``message`` breaks the ``reads`` or ``events`` schema, as ``path: reason`` (empty when valid)."""
    errors = []
    for error in sorted(_validator(name).iter_errors(message), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    return errors
