"""Request bodies read with JSON's numbers as exact decimals, not as binary floats, and refused in
words when they cannot be read as the operation's JSON.

A register or an amount of money sent as a JSON number went through ``json.loads`` as a float
before Pydantic saw it: ``12345678901.234567`` became ``12345678901.234568`` and was stored so,
answered 200. Reading numbers as ``Decimal`` keeps them as written; a ``float`` field still takes
them (Pydantic converts).

A body is refused, a 422 problem whose ``errors`` say where and what (:func:`unreadable`), when:

- an object names a member twice (``{"reason": "a", "reason": "b"}``): ``json.loads`` kept the last
  silently, so a client's bug or a tampered request meant something else than its first reading, and
  was saved so;
- it is not JSON, or not UTF-8: FastAPI said ``JSON decode error`` at a character offset, or a bare
  400 "There was an error parsing the body";
- it is sent as another type than JSON (``text/plain``, a form, no ``Content-Type``): pydantic's
  "Input should be a valid dictionary or object to extract fields from".

Each is said by a dependency solved after the operation's own (:func:`with_last_dependency`): without
a valid key, the answer is a 401 whatever the body, as for a body of the wrong fields (before, a body
that was not JSON was a 422 to anyone).
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal
from typing import Any

from fastapi import Request, Response

from server.problems import Problem
from server.query_params import KnownQueryRoute, with_last_dependency

#: The keyword the body's check is passed to the endpoint's wrapper under (and dropped before the endpoint).
_CHECK = "_body_readable"
_UNREADABLE = "_unreadable_body"


class _NamedTwice(dict[str, Any]):
    """A JSON object one of whose members is named more than once; its members kept, in order."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs
        seen: set[str] = set()
        self.twice = ""
        for name, _ in pairs:
            if name in seen:
                self.twice = name
                break
            seen.add(name)


class NamedTwiceError(ValueError):
    """A JSON body one of whose objects names a member twice; ``location`` is where (``body/reason``)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def loads_exact(raw: bytes | str) -> Any:
    """``raw`` as JSON, its numbers as ``Decimal``; :class:`NamedTwiceError` for an object naming a
    member twice, ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError``) for text that is
    not JSON. A body without a repeat is walked no further than ``json.loads`` walks it."""
    repeated = False

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        made = dict(pairs)
        if len(made) == len(pairs):
            return made
        repeated = True
        return _NamedTwice(pairs)

    value = json.loads(raw, parse_float=Decimal, object_pairs_hook=members)
    if repeated:
        raise NamedTwiceError("/".join(next(_repeats(value, ["body"]))))
    return value


def _repeats(value: Any, path: list[str]) -> Iterator[list[str]]:
    """The paths of the members named twice in ``value``, the outermost first in the document's order."""
    if isinstance(value, _NamedTwice):
        yield [*path, value.twice]
    if isinstance(value, dict):
        pairs = value.pairs if isinstance(value, _NamedTwice) else value.items()
        for name, member in pairs:
            yield from _repeats(member, [*path, name])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _repeats(item, [*path, str(index)])


def unreadable(location: str, message: str) -> Problem:
    """422 for a body that cannot be read, in the shape of the API's other invalid requests."""
    return Problem(
        422, f"{location}: {message}", title="Invalid request", errors=[{"location": location, "message": message}]
    )


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON: ``application/json`` or ``application/…+json``."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class _ExactJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_exact(await self.body())
            except NamedTwiceError as error:  # said by _body_readable, once the key is checked
                setattr(
                    self,
                    _UNREADABLE,
                    unreadable(error.location, "given more than once: an object names each member once"),
                )
                self._json = None
            except UnicodeDecodeError:
                setattr(self, _UNREADABLE, unreadable("body", "the body is not UTF-8 text (JSON is UTF-8)"))
                self._json = None
            except json.JSONDecodeError as error:
                where = f"line {error.lineno}, column {error.colno}"
                setattr(self, _UNREADABLE, unreadable("body", f"the body is not JSON: {error.msg} ({where})"))
                self._json = None
        return self._json


async def _body_readable(request: Request) -> None:
    """The last dependency but the query's of an operation taking a body: its body's problem, if any."""
    if getattr(request.scope.get("route"), "body_field", None) is None:
        return
    problem: Problem | None = getattr(request, _UNREADABLE, None)
    if problem is not None:
        raise problem
    content_type = request.headers.get("content-type")
    if await request.body() and not is_json(content_type):
        sent = content_type.partition(";")[0].strip() if content_type else "a body without a Content-Type"
        raise unreadable("body", f"the body is JSON, sent as application/json, not {sent}")


class ExactJsonRoute(KnownQueryRoute):
    """A route whose JSON body keeps its numbers' digits (FastAPI's custom route class pattern) and is
    refused in words when it cannot be read, and whose query takes only the parameters it declares
    (:class:`KnownQueryRoute`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if kwargs.get("include_in_schema", True):
            endpoint = with_last_dependency(endpoint, _body_readable, _CHECK)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            return await handler(_ExactJsonRequest(request.scope, request.receive))

        return exact
