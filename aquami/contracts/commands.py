"""The gateway's downlink: ``cmd/{name}`` requests and their ``cmd/{name}/reply``, and their JSON Schemas.

The gateway (:mod:`gateway.commands`) checks each request against its schema and answers one it
refuses with ``{"ok": false, "error": ...}``, the error one line that names the field
(:func:`request_problem`); a head-end or a technician's tool can check its requests, and the
gateway's replies, against the same file. ``read-now``'s reading is the ``reads`` contract's
``$defs/reading``, referred to across the two files.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from referencing import Registry, Resource

from aquami.contracts.reads import reads_schema
from aquami.contracts.schema_files import ContractValidator, breaches, load_schema

COMMANDS = ("read-now", "reload", "scan")
SCHEMA_ID = "https://aquami.org/schemas/mqtt/v1/commands.json"
_TYPE_NAMES = {"string": "a string", "integer": "an integer", "null": "null", "object": "an object"}
_SHOWN = 80  # characters of a refused value said in an error

__all__ = [
    "COMMANDS",
    "commands_schema",
    "reply_errors",
    "request_problem",
    "valid_request_id",
]


@cache
def commands_schema() -> dict[str, Any]:
    return load_schema("commands.schema.json")


@cache
def _registry() -> Registry[Any]:
    """Both files by their ``$id``: a reply's ``reads.json#/$defs/reading`` is found there."""
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in (commands_schema(), reads_schema())
    )


@cache
def _validator(definition: str) -> Validator:
    """The validator of one of the file's ``$defs`` (``scan_request``, ``error_reply``, …)."""
    if definition not in commands_schema()["$defs"]:
        raise KeyError(definition)
    return ContractValidator({"$ref": f"{SCHEMA_ID}#/$defs/{definition}"}, registry=_registry())


def valid_request_id(value: Any) -> bool:
    """Whether a reply can echo ``value`` as its ``request_id``."""
    return _validator("request_id").is_valid(value)


def request_problem(name: str, request: dict[str, Any]) -> str | None:
    """What is wrong with ``request`` for the command ``name``, as one line that starts with or names
    the field (None when the schema takes it). One problem is said, the first field's by name."""
    errors = list(_validator(f"{name}_request").iter_errors(request))
    if not errors:
        return None
    said = sorted((_field(error), _say(name, error)) for error in errors)
    return said[0][1]


def reply_errors(name: str | None, reply: Any) -> list[str]:
    """Every way ``reply`` breaks the reply schema of command ``name`` (``error_reply`` for None or a
    command the gateway does not know), as ``path: reason`` lines (empty when valid)."""
    definition = f"{name}_reply" if name in COMMANDS else "error_reply"
    return breaches(_validator(definition), reply)


def _field(error: ValidationError) -> str:
    if error.validator == "required":
        return str(error.message).split("'")[1]  # "'meter_id' is a required property"
    if error.validator == "additionalProperties":
        return min(_extra_fields(error))
    return str(error.absolute_path[0]) if error.absolute_path else "(root)"


def _known_fields(error: ValidationError) -> list[str]:
    return sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []


def _extra_fields(error: ValidationError) -> list[str]:
    request: dict[str, Any] = error.instance if isinstance(error.instance, dict) else {}
    return sorted(key for key in request if key not in _known_fields(error))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _say(name: str, error: ValidationError) -> str:
    field = _field(error)
    if error.validator == "required":
        return f"{field} is required"
    if error.validator == "additionalProperties":
        extra = ", ".join(_shown(key) for key in _extra_fields(error))
        return f"{extra}: not a field of {name} (its fields: {', '.join(_known_fields(error))})"
    if error.validator == "type":
        wanted_types: Any = error.validator_value  # a type's name, or a list of them
        types = [str(t) for t in (wanted_types if isinstance(wanted_types, list) else [wanted_types])]
        names = [_TYPE_NAMES.get(t, t) for t in types]
        wanted = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        return f"{field} must be {wanted}, not {_shown(error.instance)}"
    if error.validator == "pattern" and field == "meter_id":
        rule = "letters, digits and . _ : -, starting with a letter or digit"
        return f"meter_id must be a meter id ({rule}), not {_shown(error.instance)}"
    if error.validator == "pattern" and field == "profile":
        rule = "a profile's name (letters, digits, _ and -), or a .toml file the gateway's configuration uses"
        return f"profile must be {rule}, not {_shown(error.instance)}"
    if error.validator in ("minimum", "maximum") and field in ("first", "last"):
        return f"{field} must be a Modbus unit id, 1 to 247, not {_shown(error.instance)}"
    if error.validator in ("minLength", "maxLength"):
        bound = error.validator_value
        if error.validator == "minLength" and bound == 1:
            return f"{field} must not be empty"
        return f"{field} must be {'at least' if error.validator == 'minLength' else 'at most'} {bound} characters long"
    return f"{field}: {_shown(error.instance)} is refused ({error.validator} {_shown(error.validator_value)})"
