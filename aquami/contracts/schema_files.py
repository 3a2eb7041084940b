"""What every contract module does with its JSON Schema file: load it from this package, and say a
message's breaches of it as ``path: reason`` lines."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator


def load_schema(filename: str) -> dict[str, Any]:
    """The schema in ``aquami/contracts/<filename>`` (shipped in the package, read as a resource)."""
    schema: dict[str, Any] = json.loads(resources.files("aquami.contracts").joinpath(filename).read_text())
    return schema


def breaches(validator: Draft202012Validator, message: Any) -> list[str]:
    """Every way ``message`` breaks ``validator``'s schema, as ``path: reason`` lines in path order
    (empty when valid); ``(root)`` for the message itself."""
    errors = []
    for error in sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    return errors
