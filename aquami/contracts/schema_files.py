"""What every contract module does with its JSON Schema file: load it from this package, check
messages against it as ECMA-262 reads its patterns (:data:`ContractValidator`), and say a message's
breaches of it as ``path: reason`` lines."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from aquami.contracts.ecma_regex import compile_pattern


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return compile_pattern(pattern)


def _pattern(validator: Validator, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """JSON Schema's ``pattern``, its regular expression read as ECMA-262 reads it: the library's own
    reads it with Python's ``re``, whose ``$`` also matches before a final line break (the gateway
    took "WM-1\\n" as a meter id, where the contract and other validators refuse it)."""
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with ``pattern`` read as ECMA-262 (aquami.contracts.ecma_regex); every contract's
#: messages are checked with it. (``patternProperties``, still read by ``re``, is in no contract.)
ContractValidator: type[Validator] = validators.extend(Draft202012Validator, {"pattern": _pattern})


def load_schema(filename: str) -> dict[str, Any]:
    """The schema in ``aquami/contracts/<filename>`` (shipped in the package, read as a resource)."""
    schema: dict[str, Any] = json.loads(resources.files("aquami.contracts").joinpath(filename).read_text())
    return schema


def breaches(validator: Validator, message: Any) -> list[str]:
    """Every way ``message`` breaks ``validator``'s schema, as ``path: reason`` lines in path order
    (empty when valid); ``(root)`` for the message itself."""
    errors = []
    for error in sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    return errors
