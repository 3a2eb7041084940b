"""Every operation of the API's OpenAPI schema, called with generated values (schemathesis).

Against a real database holding a small fleet (meters, hourly reads, alerts and the enquiries they
raised, an account), every operation is called with path, query, header and body values made from its
schema, valid and invalid ones, under a key whose role may call it, and now and then under none, under
a key of a role that may not, or under the wrong keys schemathesis makes from the document's
security schemes. Whatever comes in:

- the answer is never a 5xx;
- its status is one the schema declares for the operation (a client generated from it has a type
  for every answer);
- a 4xx says why: a problem+json body with a non-empty ``detail``;
- an answer whose status the schema declares a body for conforms to it;
- a refused write leaves the stored data as it was (a checksum of every table, before and after).

The HTML pages are outside the schema (``include_in_schema=False``): tests/server/test_web_fuzz.py fuzzes them.
Deterministic (``derandomize``); ``AQUAMI_FUZZ_EXAMPLES`` raises the examples per operation for a
longer hunt locally.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urlencode

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from server.app import create_app
from server.auth import SESSION_COOKIE
from tests.server.fuzz_fleet import load_fleet, table_checksums
from tests.services import migrated_database

EXAMPLES = int(os.environ.get("AQUAMI_FUZZ_EXAMPLES", "8"))
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@pytest.fixture(scope="module")
def fuzzed(
    timescale_admin_url: str, migrated_template: str
) -> Iterator[tuple[FastAPI, dict[str, str], dict[str, str], str]]:
    with migrated_database(timescale_admin_url, migrated_template) as url:
        keys, stored = load_fleet(url)
        app = create_app(url)
        with TestClient(app):  # runs the lifespan: the pool the routes take connections from
            yield app, keys, stored, url


# The schema is the app's own, read without a database (a route connects only when called); the
# calls go to the app of ``fuzzed``, on the test database. Not ``schemathesis.pytest.from_fixture``:
# schemathesis 4.32 sets pytest's private ``Function._nodeid`` there, gone in pytest 9. Not
# ``from_asgi``: it runs that app's lifespan, whose pool keeps trying a host that is not there.
_SCHEMA_APP = create_app("postgresql://schema-only.invalid/aquami")
schema = schemathesis.openapi.from_dict(_SCHEMA_APP.openapi())
schema.app = _SCHEMA_APP  # the ASGI transport; each call names the app of ``fuzzed``


def _pick(case: Any) -> int:
    """A number from the case's own values: the same choice each run."""
    return zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())


def _name_stored_things(case: Any, stored: dict[str, str]) -> None:
    """Half the cases name a stored meter, reading, alert or enquiry in their path: generated ids
    alone are nearly all unknown (404), and the body or query would never reach the code behind."""
    if case.path_parameters and _pick(case) % 2:
        for name in case.path_parameters:
            if name in stored:
                case.path_parameters[name] = stored[name]


#: The headers a key comes in (the document's security schemes; the third is the page's cookie).
_KEY_HEADERS = frozenset({"authorization", "x-api-key"})


def _signed(case: Any, keys: dict[str, str]) -> dict[str, str]:
    """The case's headers, signed: mostly by the admin key (every role's endpoints accept it); one
    case in eight by none, one in eight by the reader's (a role most writes refuse). Schemathesis
    makes a value for each key scheme the document declares (a bearer, an X-API-Key, the page's
    cookie: text, not keys): one case in eight keeps those (a wrong key, when it made one), the
    others have them taken off (the case's cookie too), so a "none" sends no key at all."""
    pick = _pick(case) // 2 % 8
    headers: dict[str, str] = dict(case.headers or {})
    generated = _KEY_HEADERS & {name.lower() for name in headers} or SESSION_COOKIE in (case.cookies or {})
    if pick == 2 and generated:
        return headers
    headers = {name: value for name, value in headers.items() if name.lower() not in _KEY_HEADERS}
    case.headers = headers
    if case.cookies:
        case.cookies = {name: value for name, value in case.cookies.items() if name != SESSION_COOKIE}
    if pick == 0:
        return headers
    return {**headers, "Authorization": f"Bearer {keys['reader' if pick == 1 else 'admin']}"}


def _any_input_gets_an_answer_that_says_why_and_a_refused_write_changes_nothing(
    case: Any, fuzzed: tuple[FastAPI, dict[str, str], dict[str, str], str]
) -> None:
    app, keys, stored, url = fuzzed
    _name_stored_things(case, stored)
    headers = _signed(case, keys)
    writes = case.method.upper() in WRITES
    before = table_checksums(url) if writes else None
    # A client not entered: schemathesis's own would run the app's lifespan (a new pool) on every call.
    # (cast: its ASGI callable type is narrower than FastAPI's.)
    response = case.call(session=ASGIClient(cast(Any, app)), headers=headers)
    case.validate_response(
        response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance], headers=headers
    )
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]  # schemathesis: each header's values
        assert content_type.startswith("application/problem+json"), (
            f"{case.method} {case.formatted_path}: {response.text}"
        )
        problem = response.json()
        assert problem.get("status") == response.status_code and str(problem.get("detail", "")).strip(), problem
        if writes:
            assert table_checksums(url) == before, f"{case.method} {case.formatted_path} refused yet changed data"


def _fuzz_test(operation_schema: Any) -> Any:
    """A test of the schema's one operation (schemathesis's phases: its examples, coverage, fuzzing)."""

    @operation_schema.parametrize()
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
    )
    def test(case: Any, fuzzed: tuple[FastAPI, dict[str, str], dict[str, str], str]) -> None:
        _any_input_gets_an_answer_that_says_why_and_a_refused_write_changes_nothing(case, fuzzed)

    return test


def _test_name(method: str, path: str) -> str:
    """``GET /meters/{meter_id}/readings`` → ``test_any_input_get_meters_meter_id_readings``."""
    return "_".join(["test_any_input", method.lower(), *re.findall(r"[A-Za-z0-9]+", path)])


# One test function per operation, each its own name. ``schema.parametrize()`` on one function makes
# an item per operation, but all of one node id under pytest 9 (schemathesis 4.32 sets the private
# ``Function._nodeid`` to tell them apart, which pytest 9 no longer reads); pytest-xdist schedules by
# node id, so ``make test`` ran one operation of the 21 (tests/conftest.py now refuses to collect
# two tests of one id).
for _result in schema.get_all_operations():
    if not isinstance(_result, Ok):  # an operation schemathesis cannot read: say so, do not skip it
        raise _result.err()
    _operation = _result.ok()
    globals()[_test_name(_operation.method, _operation.path)] = _fuzz_test(
        schema.include(method=_operation.method.upper(), path=_operation.path)
    )


#: The fields of Open311's "POST Service Request" (its body is read by hand, so not in the schema).
_OPEN311_FIELDS = (
    "service_code", "description", "lat", "long", "address_string", "address_id", "email", "first_name",
    "last_name", "phone", "media_url", "attribute", "attribute[pipe]", "api_key", "jurisdiction_id",
)  # fmt: skip
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["leak_street"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_NAMES = st.sampled_from(_OPEN311_FIELDS) | st.text(max_size=12)


@given(
    body=st.one_of(
        st.dictionaries(_NAMES, _JSON_VALUES, max_size=6).map(lambda d: ("json", d)),
        st.lists(st.tuples(_NAMES, st.text(max_size=30) | st.sampled_from(["leak_street"])), max_size=6).map(
            lambda pairs: ("form", pairs)
        ),
        st.binary(max_size=40).map(lambda raw: ("raw", raw)),
    ),
    signed=st.sampled_from(["header", "none", "reader"]),
)
@settings(
    max_examples=EXAMPLES * 6,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_an_open311_request_of_any_body_is_raised_or_refused_with_why_and_nothing_stored(
    fuzzed: tuple[FastAPI, dict[str, str], dict[str, str], str], body: tuple[str, Any], signed: str
) -> None:
    """``POST /open311/v2/requests.json`` reads its form or JSON body itself (Open311 clients post
    forms): schemathesis has no schema to make bodies from, so they are made here."""
    app, keys, _, url = fuzzed
    headers = (
        {} if signed == "none" else {"Authorization": f"Bearer {keys['admin' if signed == 'header' else 'reader']}"}
    )
    kind, given = body
    before = table_checksums(url)
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan of its own: the fixture's runs
    if kind == "json":
        response = client.post("/open311/v2/requests.json", json=given, headers=headers)
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        raw = urlencode(given) if kind == "form" else given
        response = client.post("/open311/v2/requests.json", content=raw, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
        problem = response.json()
        assert problem.get("status") == response.status_code and str(problem.get("detail", "")).strip(), problem
        assert table_checksums(url) == before, f"refused ({response.status_code}) yet changed data: {given!r}"
