"""A POST requests.json body as Open311 clients send it, and the key that signs it.

GeoReport v2's "POST Service Request" is a form (``application/x-www-form-urlencoded``) whose
``api_key`` field is the key, and whose attributes are fields named ``attribute[code]``; aquami also
takes a JSON object (``"attribute": {"code": …}``) and the key in the API's usual header
(``Authorization: Bearer`` or ``X-API-Key``). The web page's cookie is not taken: a form another
site posts would carry it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from fastapi import Request

from server.auth import Principal, authorize, header_key, may
from server.problems import Problem

FORM = "application/x-www-form-urlencoded"
#: A form's attribute field; \Z, not $: "$" would take "attribute[account]\n" for the account's.
_ATTRIBUTE = re.compile(r"^attribute\[([^\]]*)\]\Z")
#: More fields than any request has (the spec's dozen and a few attributes): a bigger form is refused.
MAX_FIELDS = 100
#: Who may raise a request (admin too), and as what source: an app customers use, as the customer;
#: customer care (``STAFF``), as staff.
STAFF = "customer_care"
RAISERS = ("customer_app", STAFF)
#: Who may read requests (admin too): customer care every one (they hold customers' words, addresses
#: and meters); an app customers use, those raised through it (server.open311.router's ``_apps_own``).
READERS = (STAFF, "customer_app")


@dataclass
class Body:
    """The fields as given (a blank one left out), the attributes, and the key if one came in the body;
    or, for a body that cannot be read, its ``problem`` (and the key it holds, if one can be told)."""

    fields: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None
    problem: Problem | None = None


def bad_request(where: str, message: str) -> Problem:
    """400 naming the field, in the shape of the API's 422s (``errors``: location and message)."""
    return Problem(
        400, f"{where}: {message}", title="Invalid service request", errors=[{"location": where, "message": message}]
    )


async def read_body(request: Request) -> Body:
    """A dependency: the form or JSON body, parsed but not yet checked. One that cannot be read (not
    UTF-8, not JSON, a field twice, neither a form nor JSON) is kept as its problem, said only once
    the key is checked (:func:`signed_by`, then ``Body.problem``): before, a POST without a key and
    with such a body was a 400 or 415 about the body, where every role-protected route answers 401."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    raw = await request.body()
    try:
        return _parsed(media_type, raw)
    except Problem as problem:
        return Body(api_key=_key_in(media_type, raw), problem=problem)


def _key_in(media_type: str, raw: bytes) -> str | None:
    """The key of a body :func:`_parsed` refused, when it still tells one: the form's or JSON
    object's single ``api_key`` text (a key in a body with another field given twice still signs it)."""
    try:
        if media_type == FORM:
            text = raw.decode("utf-8")
            keys: list[Any] = [
                v for k, v in parse_qsl(text, errors="strict", max_num_fields=MAX_FIELDS) if k == "api_key"
            ]
        elif media_type == "application/json":
            given = json.loads(raw, object_pairs_hook=_Pairs)
            keys = [v for k, v in given if k == "api_key" and v not in (None, "")] if isinstance(given, _Pairs) else []
        else:
            return None
    except ValueError:  # not UTF-8, not JSON, too many fields: no key can be told
        return None
    return keys[0] if len(keys) == 1 and isinstance(keys[0], str) else None


class _Pairs(list[tuple[str, Any]]):
    """A JSON object's members, in order, repeats kept (to tell its keys from a list's items)."""


def _parsed(media_type: str, raw: bytes) -> Body:
    if media_type == FORM:
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
        except UnicodeDecodeError:
            raise Problem(400, "the form is not UTF-8 (GeoReport v2: UTF-8 everywhere)") from None
        except ValueError:
            raise Problem(400, f"the form has more than {MAX_FIELDS} fields") from None
        return _from_pairs(pairs)
    if media_type == "application/json":
        try:
            given = json.loads(raw, object_pairs_hook=_JsonObject.of)
        except ValueError:
            raise Problem(400, "the body is not JSON") from None
        if not isinstance(given, dict):
            raise bad_request("body", "a JSON object of the request's fields is expected")
        return _from_object(given)
    raise Problem(
        415,
        f"a service request is posted as {FORM} (as Open311 clients send it) or application/json, "
        f"not {media_type or 'a body without a Content-Type'}; a photo is given as media_url",
        title="Unsupported Media Type",
    )


def _from_pairs(pairs: list[tuple[str, str]]) -> Body:
    body = Body()
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise bad_request(name, "given more than once")
        seen.add(name)
        if value == "":
            continue
        _put(body, name, value)
    return body


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the names it was given more than once (``json.loads`` keeps the
    last silently; the form's field given twice is refused, and so is the JSON's)."""

    twice: list[str]

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _JsonObject:
        made = cls()
        made.twice = []
        for name, value in pairs:
            if name in made:
                made.twice.append(name)
            made[name] = value
        return made


def _refuse_twice(given: dict[str, Any], where: str = "{}") -> None:
    twice: list[str] = getattr(given, "twice", [])
    if twice:
        raise bad_request(where.format(twice[0]), "given more than once")


def _from_object(given: dict[str, Any]) -> Body:
    body = Body()
    _refuse_twice(given)
    attributes = given.pop("attribute", None)
    if attributes is not None and not isinstance(attributes, dict):
        raise bad_request("attribute", "an object of attribute codes and answers is expected")
    if attributes is not None:
        _refuse_twice(attributes, "attribute[{}]")
    for name, value in given.items():
        if value is None or value == "":
            continue
        _put(body, name, value)
    for code, value in (attributes or {}).items():
        if value is not None and value != "":
            body.attributes[code] = value
    return body


def _put(body: Body, name: str, value: Any) -> None:
    attribute = _ATTRIBUTE.match(name)
    if attribute is not None:
        body.attributes[attribute[1]] = value
    elif name == "api_key":
        if not isinstance(value, str):
            raise bad_request("api_key", "a key is text")
        body.api_key = value
    else:
        body.fields[name] = value


def signed_by(conn: psycopg.Connection, request: Request, body: Body | None, *allowed: str) -> Principal:
    """The principal of the key in the body (Open311's ``api_key``) or in the API's headers, never
    the cookie, when it has one of ``allowed`` (or admin): 401 without a valid key, 403 without such a role."""
    key = body.api_key.strip() if body is not None and body.api_key is not None else header_key(request)
    return authorize(conn, key, *allowed, hint=_where_a_key_goes(request, body))


#: What a 401 adds when the key was sent where it is not read: before, a valid key put in the address,
#: or in a multipart form (as clients attaching a photo post), was told only "a valid API key is
#: required", and the app's developer went looking for a wrong key.
_IN_THE_ADDRESS = "an api_key in the address is not read: addresses are logged"
_IN_MULTIPART = f"a multipart/form-data body is not read: post the form as {FORM}, a photo as media_url"


def _where_a_key_goes(request: Request, body: Body | None) -> str:
    """Where the key is read (the form's field only for a request that has a body: a GET's is the
    header's alone), and why the one sent was not, when it was sent where it is not read."""
    said = ["the api_key field, or Authorization: Bearer <key>" if body is not None else "Authorization: Bearer <key>"]
    if "api_key" in request.query_params:
        said.append(_IN_THE_ADDRESS)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if body is not None and media_type == "multipart/form-data":
        said.append(_IN_MULTIPART)
    return "; ".join(said)


def source_of(principal: Principal) -> tuple[str, str]:
    """The enquiry's source for the key's roles (staff for customer care's, or admin's) and who raised it."""
    return ("staff" if may(principal, STAFF) else "customer"), principal.name
