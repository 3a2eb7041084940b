"""A query parameter an operation does not take is refused, not ignored.

Before, FastAPI ignored every query parameter a route does not declare: ``GET /alerts?meter=WM-1``
(the parameter is ``meter_id``) answered every alert, and ``GET /enquiries?priority=urgent`` (then
no such filter) every enquiry; a billing system or a care agent with a mistyped filter acted on
everything, unwarned. Every operation the OpenAPI document shows now answers such a request 400,
naming the parameter, the ones the operation takes, and the one meant where a name is near.

A parameter given more than once was not refused either: FastAPI reads a scalar parameter's last
value, so ``GET /alerts?meter_id=M1&meter_id=M2`` answered M2's alerts, 200, and ``limit=1&limit=50``
a page of 50. It is a 400 naming it now (:func:`given_more_than_once`); a list-valued parameter
(declared ``list[...]``, which FastAPI reads every value of) takes repeats, and so do the parameters a
route takes and ignores (:attr:`KnownQueryRoute.also_takes`): no value of theirs is chosen.

The check is a dependency added last to each route's endpoint (:class:`KnownQueryRoute`), so it is
solved after the route's own dependencies: a keyed route still answers 401 without a key, whatever
its query, as before. The pages (server.web) check theirs once signed in, and say it on the page
(server.web.pages.address_not_taken).
"""

from __future__ import annotations

import collections
import collections.abc
import difflib
import functools
import inspect
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import Json

from server.problems import Problem

#: The keyword the check is passed to the endpoint's wrapper under (and dropped before the endpoint).
_CHECK = "_query_parameters_known"
UNKNOWN_TITLE = "Unknown query parameter"
REPEATED_TITLE = "Query parameter given more than once"


class QueryParameters:
    """The dependency checking a request's query against the parameters its route takes
    (:attr:`takes`) and those of them it takes more than one value of (:attr:`repeatable`), both
    filled once the route has built its dependencies."""

    def __init__(self, also_takes: frozenset[str]) -> None:
        self.also_takes = also_takes
        self.takes: tuple[str, ...] = ()
        self.repeatable: frozenset[str] = frozenset()

    def __call__(self, request: Request) -> None:
        given = Counter(name for name, _ in request.query_params.multi_items())
        unknown = [name for name in given if name not in self.takes]
        if unknown:
            raise unknown_parameters(request, unknown, self.takes)
        repeated = {name: count for name, count in given.items() if count > 1 and name not in self.repeatable}
        if repeated:
            raise given_more_than_once(request, repeated, self.takes, self.repeatable)


def unknown_parameters(request: Request, unknown: list[str], takes: tuple[str, ...]) -> Problem:
    """400 naming each parameter ``unknown``, the parameters taken, and a near one where there is."""
    errors = [{"location": f"query/{name}", "message": _not_taken(name, takes)} for name in unknown]
    listed = ", ".join(takes) if takes else "no query parameters"
    path = getattr(request.scope.get("route"), "path_format", request.url.path)
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
    return Problem(400, f"{detail}; {request.method} {path} takes {listed}", title=UNKNOWN_TITLE, errors=errors)


def given_more_than_once(
    request: Request, repeated: dict[str, int], takes: tuple[str, ...], repeatable: frozenset[str]
) -> Problem:
    """400 naming each parameter ``repeated`` (with how many times it was given) and what the
    operation takes: one value of each, but of the ``repeatable`` ones."""
    errors = [
        {"location": f"query/{name}", "message": f"given {_times(count)}: give it once"}
        for name, count in repeated.items()
    ]
    path = getattr(request.scope.get("route"), "path_format", request.url.path)
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
    several = [name for name in takes if name in repeatable]
    listed = ", ".join(name for name in takes if name not in repeatable)
    takes_said = f"takes one value of each of {listed}" + (
        f", and any number of {', '.join(several)}" if several else ""
    )
    return Problem(400, f"{detail}; {request.method} {path} {takes_said}", title=REPEATED_TITLE, errors=errors)


def _times(count: int) -> str:
    return "twice" if count == 2 else f"{count} times"


def _not_taken(name: str, takes: tuple[str, ...]) -> str:
    said = "not a parameter of this operation"
    near = meant(name, takes)
    return f"{said}; did you mean {near}?" if near else said


def meant(name: str, takes: tuple[str, ...]) -> str | None:
    """The parameter of ``takes`` nearest ``name`` (difflib), if one is near: ``meter`` for ``meterid``."""
    near = difflib.get_close_matches(name, takes, n=1, cutoff=0.6)
    return near[0] if near else None


def query_names(dependant: Dependant) -> Iterator[str]:
    """The query parameters ``dependant`` and its dependencies take, however deep."""
    for field in dependant.query_params:
        yield field.alias
    for sub in dependant.dependencies:
        yield from query_names(sub)


def repeatable_names(dependant: Dependant) -> Iterator[str]:
    """The query parameters ``dependant`` and its dependencies take a list of, however deep: those
    FastAPI reads every value of (a sequence, not parsed as JSON), where it reads a scalar's last."""
    for field in dependant.query_params:
        info = field.field_info
        if takes_every_value(info.annotation) and not any(type(m) is Json for m in info.metadata):
            yield field.alias
    for sub in dependant.dependencies:
        yield from repeatable_names(sub)


#: The containers FastAPI reads every value of a repeated query parameter into (a str, a Sequence
#: too, is one value).
_CONTAINERS = (list, tuple, set, frozenset, collections.deque, collections.abc.Sequence)


def takes_every_value(annotation: object) -> bool:
    """Whether FastAPI reads every value of a query parameter so annotated, not its last: a
    container, alone, in ``Annotated`` or in a union (``list[str] | None``). FastAPI's own answer
    (``field_annotation_is_sequence``) is in a private module (``fastapi._compat``), which any
    release may move or change; tests/server/test_repeated_query_parameters.py asks FastAPI itself,
    shape by shape, that this agrees with what it reads."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return takes_every_value(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(takes_every_value(arg) for arg in get_args(annotation))
    return _is_a_container(annotation) or _is_a_container(origin)


def _is_a_container(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, _CONTAINERS) and not issubclass(kind, (str, bytes))


def with_last_dependency(
    endpoint: Callable[..., Any], check: Callable[..., Any], keyword: str = _CHECK
) -> Callable[..., Any]:
    """``endpoint`` with ``check`` as its last dependency (a keyword FastAPI solves after the others),
    passed under ``keyword`` and dropped before the endpoint is called. server.exact_json checks the
    body so, after the key too."""
    try:
        signature = inspect.signature(endpoint, eval_str=True)
    except NameError:  # an annotation only a type checker imports: FastAPI resolves it as before
        signature = inspect.signature(endpoint)
    extra = inspect.Parameter(keyword, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[None, Depends(check)])
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop(keyword, None)
            return await endpoint(*args, **kwargs)

        wrapper: Callable[..., Any] = checked_async
    else:

        @functools.wraps(endpoint)
        def checked(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop(keyword, None)
            return endpoint(*args, **kwargs)

        wrapper = checked
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])  # type: ignore[attr-defined]
    return wrapper


class KnownQueryRoute(APIRoute):
    """A route whose operation refuses a query parameter it does not take (400, :func:`unknown_parameters`),
    and one of its own but a list given more than once (400, :func:`given_more_than_once`); one the
    document does not show (a catch-all, a page) is left as it was. A subclass names in :attr:`also_takes`
    what its routes take without reading it, given once or more (Open311's ``jurisdiction_id``)."""

    also_takes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        check = QueryParameters(self.also_takes)
        if kwargs.get("include_in_schema", True):
            endpoint = with_last_dependency(endpoint, check)
        super().__init__(path, endpoint, **kwargs)
        check.takes = tuple(dict.fromkeys([*query_names(self.dependant), *sorted(self.also_takes)]))
        check.repeatable = frozenset([*repeatable_names(self.dependant), *self.also_takes])
