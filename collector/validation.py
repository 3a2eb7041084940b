"""JSON Schema validation of the MQTT payloads, saying every way a message is wrong.

Readings take the msgspec fast path first (collector/fast_reads.py); this validator explains what
that path refused. ``events`` messages are validated by :mod:`aquami.contracts.events`.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from jsonschema.protocols import Validator

from aquami.contracts.events import events_validator
from aquami.contracts.reads import reads_validator


def _validator(name: str) -> Validator:
    return reads_validator() if name == "reads" else events_validator()


def schema_errors(name: str, message: Any, limit: int | None = None) -> list[str]:
    """Every way ``message`` breaks the ``reads`` or ``events`` schema, as ``path: reason`` (empty when
    valid); with ``limit``, the first ``limit`` the validator finds (it stops there), in path order."""
    errors = []
    found = islice(_validator(name).iter_errors(message), limit)
    for error in sorted(found, key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    return errors
