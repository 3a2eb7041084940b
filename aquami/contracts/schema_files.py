"""What every contract module does with its JSON Schema file: load it from this package, check
messages against it as ECMA-262 reads its patterns (:data:`ContractValidator`), and say a message's
breaches of it as ``path: reason`` lines.

A schema's regular expressions are in ``pattern`` and in ``patternProperties``' keys, which the
keywords ``additionalProperties`` and ``unevaluatedProperties`` read too (a property a pattern
takes is no additional one, and is evaluated); ``propertyNames`` holds a schema, whose ``pattern``
is read here like any other. The ``jsonschema`` library searches them all with Python's ``re``:
every one of those keywords is replaced here by one that reads them as ECMA-262 does. Before, only
``pattern`` was: a ``patternProperties`` key ``^[a-z]+$`` took the property "a\\n" as Python's ``$``
does, where ECMA-262 (and other validators) leave it to ``additionalProperties``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import Any, Protocol

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from aquami.contracts.ecma_regex import compile_pattern


class _Descending(Validator, Protocol):
    """A validator as a keyword's function gets it: jsonschema's classes have ``descend`` (to check
    a part of the instance against a part of the schema), which its protocol does not declare."""

    def descend(
        self, instance: Any, schema: Any, path: str | int | None = None, schema_path: str | int | None = None
    ) -> Iterator[ValidationError]: ...

    def evolve(self, **changes: Any) -> _Descending: ...


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return compile_pattern(pattern)


def _pattern(validator: Validator, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """JSON Schema's ``pattern``, its regular expression read as ECMA-262 reads it: the library's own
    reads it with Python's ``re``, whose ``$`` also matches before a final line break (the gateway
    took "WM-1\\n" as a meter id, where the contract and other validators refuse it)."""
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _taken(patterns: Iterable[str], name: str) -> bool:
    """Whether one of ``patterns`` (a ``patternProperties``' keys, ECMA-262) matches ``name``."""
    return any(_compiled(pattern).search(name) for pattern in patterns)


def _pattern_properties(
    validator: _Descending, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if _compiled(pattern).search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The properties neither ``properties`` names nor a ``patternProperties`` key matches."""
    named, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    return [name for name in instance if name not in named and not _taken(patterns, name)]


def _additional_properties(
    validator: _Descending, additional: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """As the library's, with the properties a pattern takes found by :func:`_additional`."""
    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif additional is False and extras:
        listed = ", ".join(repr(extra) for extra in sorted(extras))
        if "patternProperties" in schema:
            patterns = ", ".join(repr(pattern) for pattern in sorted(schema["patternProperties"]))
            yield ValidationError(
                f"{listed} {'does' if len(extras) == 1 else 'do'} not match any of the regexes: {patterns}"
            )
        else:
            yield ValidationError(
                f"Additional properties are not allowed ({listed} {'was' if len(extras) == 1 else 'were'} unexpected)"
            )


def _unevaluated_properties(
    validator: _Descending, unevaluated: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """As the library's, with the properties evaluated found by :func:`_evaluated`."""
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated(validator, instance, schema)
    left = [name for name in instance if name not in evaluated]
    failing = [name for name in left if not _passes(validator, instance[name], unevaluated, path=name)]
    if failing and unevaluated is False:
        yield ValidationError(f"Unevaluated properties are not allowed ({_were(sorted(failing), 'unexpected')})")
    elif failing:
        said = _were(failing, "unevaluated and invalid")
        yield ValidationError(f"Unevaluated properties are not valid under the given schema ({said})")


def _passes(validator: _Descending, instance: Any, subschema: Any, path: str | None = None) -> bool:
    """Whether ``instance`` is valid under ``subschema``, a part of the validator's schema."""
    return next(validator.descend(instance, subschema, path=path), None) is None


def _were(names: list[str], what: str) -> str:
    return f"{', '.join(repr(name) for name in names)} {'was' if len(names) == 1 else 'were'} {what}"


def _evaluated(validator: _Descending, instance: dict[str, Any], schema: Any) -> set[str]:
    """The properties of ``instance`` that ``schema`` evaluates, for ``unevaluatedProperties`` (JSON
    Schema 2020-12 §11.3): jsonschema's ``find_evaluated_property_keys_by_schema``, which searches
    ``patternProperties``' keys with ``re``, with them read as ECMA-262 here. It follows ``$ref``
    with the validator's resolver, as the library's keywords do (``_resolver``, no public name)."""
    if not isinstance(schema, dict):
        return set()
    found: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        if keyword in schema:
            resolved = validator._resolver.lookup(schema[keyword])  # type: ignore[attr-defined]
            inner = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            found |= _evaluated(inner, instance, resolved.contents)
    if validator.is_type(schema.get("properties"), "object"):
        found |= schema["properties"].keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if keyword in schema:
            found |= {name for name, value in instance.items() if _passes(validator, value, schema[keyword])}
    found |= {name for name in instance if _taken(schema.get("patternProperties", {}), name)}
    for name, subschema in schema.get("dependentSchemas", {}).items():
        if name in instance:
            found |= _evaluated(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if _passes(validator, instance, subschema):
                found |= _evaluated(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            found |= _evaluated(validator, instance, schema["if"]) | _evaluated(validator, instance, schema.get("then"))
        else:
            found |= _evaluated(validator, instance, schema.get("else"))
    return found


#: Draft 2020-12 with every regular expression read as ECMA-262 (aquami.contracts.ecma_regex):
#: ``pattern``, and ``patternProperties``' keys wherever they are read. Every contract's messages
#: are checked with it.
ContractValidator: type[Validator] = validators.extend(
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "unevaluatedProperties": _unevaluated_properties,
    },
)


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
