"""Every route outside the OpenAPI schema (``include_in_schema=False``: the web pages, the forms they
post back, the API's documentation pages), called with generated values (hypothesis).

The routes are read from the app's router, so a new page is fuzzed without a line here; a route
whose parameters this cannot make (a header, a cookie, a JSON or file body) fails, to be taught here.
Against the API fuzz's fleet (tests/server/fuzz_fleet.py), each route's path, query and form
parameters get stored values (an enquiry, a meter, a page's link tokens, a stored enquiry's version)
or bad ones: wrong types, empty, huge, unicode, NUL, negative and overflowing numbers, bad dates,
unknown ids, ``<script>``; under no key, one that is not valid, or the key of any role, in the
session cookie or the API's header; a form from this site or another. Whatever comes in:

- the answer is never a 5xx, and never shows a traceback;
- a page's refusal is an HTML page saying why (an error message, or the sign-in form for no key),
  a redirect goes to this server; a route that is not a page (:data:`NOT_PAGES`) says why in
  problem+json;
- a value holding ``<script`` never comes back unescaped;
- a refused form leaves every table's checksum as it was.

Each route must get past sign-in at least once (it was exercised, not only refused).
Deterministic (``derandomize``); ``AQUAMI_FUZZ_EXAMPLES`` raises the examples per page (30; a third of
them for each route that is not a page, whose one handler refuses everything).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlencode

import psycopg
import pytest
from fastapi import FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from server.app import create_app
from server.auth import ROLES, SESSION_COOKIE
from server.body_limit import MAX_BODY_BYTES
from server.care import desk
from tests.server.fuzz_fleet import load_fleet, table_checksums
from tests.services import migrated_database

EXAMPLES = int(os.environ.get("AQUAMI_FUZZ_EXAMPLES", "30"))

#: Routes outside the schema that are not pages, and why: they answer problem+json, as the API does.
NOT_PAGES = {
    "/open311/v2/{rest:path}": "Open311's addresses aquami does not serve, asked by Open311's machine clients",
    "/openapi.json": "the schema itself",
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    path_params: tuple[str, ...]
    query: tuple[str, ...]
    form: tuple[str, ...]

    @property
    def page(self) -> bool:
        return self.path not in NOT_PAGES


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _routes(app: FastAPI) -> list[Route]:
    """Every method of every route the schema leaves out, with the parameters it declares."""
    found = []
    for route in iter_route_contexts(app.routes):
        if getattr(route, "include_in_schema", True) or not route.methods:
            continue
        dependants = list(_dependants(route.dependant)) if getattr(route, "dependant", None) else []
        names = {
            kind: tuple(field.alias for d in dependants for field in getattr(d, f"{kind}_params"))
            for kind in ("path", "query", "header", "cookie", "body")
        }
        form = tuple(
            field.alias for d in dependants for field in d.body_params if isinstance(field.field_info, params.Form)
        )
        unmade = [*names["header"], *names["cookie"], *(name for name in names["body"] if name not in form)]
        assert not unmade, f"{route.path}: this fuzz makes no header, cookie or non-form body ({unmade}): teach it"
        for method in sorted(route.methods - {"HEAD"}):
            found.append(Route(method, str(route.path), names["path"], names["query"], form))
    return found


# Read without a database (a route connects only when called), as the API fuzz reads its schema.
ROUTES = _routes(create_app("postgresql://schema-only.invalid/aquami"))


def test_every_page_the_app_serves_is_fuzzed() -> None:
    """The enumeration finds the pages there are (a router it stopped seeing would fuzz nothing)."""
    pages = {f"{route.method} {route.path}" for route in ROUTES if route.page}
    assert {"GET /", "GET /login", "POST /login", "POST /logout", "GET /care/enquiries"} <= pages, pages
    assert {"GET /care/enquiries/{enquiry_id}", "POST /care/enquiries/{enquiry_id}", "GET /docs"} <= pages, pages
    assert "GET /care/meters/{meter_id:meter_id}" in pages, pages


@pytest.fixture(scope="module")
def fuzzed(
    timescale_admin_url: str, migrated_template: str
) -> Iterator[tuple[FastAPI, dict[str, str], dict[str, str], str]]:
    with migrated_database(timescale_admin_url, migrated_template) as url:
        keys, stored = load_fleet(url)
        app = create_app(url)
        with TestClient(app) as client:  # runs the lifespan: the pool the routes take connections from
            stored["raised"] = _raise_a_script(client, keys)
            yield app, keys, stored, url


#: What a person wrote, stored, that pages show (an Open311 request's words, a note): never unescaped.
STORED_SCRIPT = "<script>alert('stored')</script>"


def _raise_a_script(client: TestClient, keys: dict[str, str]) -> str:
    """An enquiry raised through Open311 whose every word is :data:`STORED_SCRIPT`, with a note
    saying it too: its id."""
    words = {name: STORED_SCRIPT for name in ("description", "address_string", "first_name", "last_name")}
    body = {"service_code": "complaint", **words, "phone": "+44 20 7946 0000", "email": "a@example.com"}
    raised = client.post(
        "/open311/v2/requests.json", json=body, headers={"Authorization": f"Bearer {keys['customer_app']}"}
    )
    assert raised.status_code == 200, raised.text
    enquiry_id = str(raised.json()[0]["service_request_id"])
    note = {"note": f"Customer wrote {STORED_SCRIPT}"}
    noted = client.post(
        f"/enquiries/{enquiry_id}/updates", json=note, headers={"Authorization": f"Bearer {keys['customer_care']}"}
    )
    assert noted.status_code < 300, noted.text
    return enquiry_id


def _page_values(url: str, keys: dict[str, str], stored: dict[str, str]) -> dict[str, list[str]]:
    """Values the pages take, by parameter name: the fleet's ids, a page's link tokens (the stored
    enquiry's place on the care desk, where a walk started, the meter's newest reading as the meter
    page's older readings begin before it), the stored enquiry's version as its form carries it, the
    workflow's words, a note the workflow takes, every key."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:  # the rows the server reads
        enquiry = conn.execute(
            "SELECT enquiry_id, status, priority, opened_at, updated_at FROM enquiries WHERE enquiry_id = %s",
            (int(stored["enquiry_id"]),),
        ).fetchone()
        assert enquiry is not None
        meter = (stored["meter_id"],)
        newest = conn.execute("SELECT max(ts) AS ts FROM readings WHERE meter_id = %s", meter).fetchone()
        pages = cast(psycopg.Connection, conn)  # the server's connections make dict rows too (server.db)
        since = desk.since_token(desk.walk_started(pages))
        categories = desk.categories(pages)
    return {
        **{name: [value] for name, value in stored.items()},
        "enquiry_id": [stored["enquiry_id"], stored["raised"], "9223372036854775807"],
        "after": [stored["meter_id"], desk.Position.of(enquiry).token()],
        "since": [since],
        "before": [newest["ts"].isoformat()] if newest and newest["ts"] else [],  # the meter page's older readings
        "updated_at": [enquiry["updated_at"].isoformat()],
        "status": list(desk.STATUSES),
        "priority": list(desk.PRIORITIES),
        "source": list(desk.SOURCES),
        "category": categories,
        "meter": [stored["meter_id"]],  # the care desk's meter filter
        "note": ["Called the customer: a dripping tap, fixed."],
        "key": list(keys.values()),
        "rest": ["services.xml", "requests.xml", "nothing"],  # one segment: "a/b" could name a route of the API
    }


_BAD = st.sampled_from(
    [
        "", " ", "0", "-1", "1.5", "1e309", "NaN", "true", "null", "[]",
        "-9223372036854775809", "9223372036854775808", "18446744073709551616", "9" * 40,
        "2026-02-30", "2026-13-01T00:00:00Z", "0000-01-01", "9999-12-31T23:59:59-14:00", "2026-03-01T00:00:00",
        "0001-01-01T00:00:00+00:00", "urgent.-999999999999999999.1", "closed.0.9223372036854775808",
        "x99999999999999999999",
        "\x00", "a\x00b", "%00", "💧🚰", "\u202e\u200b", "İı", "aqk_", "aqk_x.y", " aqk_x.y ",
    ]
)  # fmt: skip
_SCRIPT = st.text(max_size=8).map(lambda text: f"<script>{text}</script>")
_HUGE = st.text(min_size=1, max_size=3).map(lambda text: text * 3000)
_ANY = st.one_of(_BAD, st.text(max_size=30), st.integers().map(str), st.datetimes().map(str), _SCRIPT, _HUGE)


def _value(name: str, known: dict[str, list[str]]) -> st.SearchStrategy[str | None]:
    """Half a stored or valid value for a parameter of that name, when there is one; else anything; and
    now and then none (the parameter left out)."""
    given = st.one_of(st.sampled_from(known[name]), _ANY) if known.get(name) else _ANY
    return st.one_of(st.none(), given, given, given)


def _path_value(name: str, known: dict[str, list[str]]) -> st.SearchStrategy[str]:
    """As :func:`_value`, but always given, and one segment: a "/" or a dot segment would name another
    address."""
    given = st.one_of(st.sampled_from(known[name]), _ANY) if known.get(name) else _ANY
    return given.filter(lambda text: text not in ("", ".", "..") and "/" not in text)


def _given(values: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


#: Who calls: the key of a role (admin and customer care first: hypothesis leans to the first), none, or one
#: that is not valid.
_SIGNED = st.sampled_from(
    ["admin", "customer_care", *(role for role in ROLES if role not in ("admin", "customer_care")), "none", "not a key"]
)
_VIA = st.sampled_from(["cookie", "header"])
#: Where a form says it comes from: nothing said, this server, or another site (by either header).
_FROM = st.sampled_from([{"Origin": "http://testserver"}, {}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}])
#: Longer than httpx's longest URL (65,536 characters): no request a server sees.
_URL_MAX = 65000
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")  # a path parameter, with its converter if any ({rest:path})
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
_ERROR = re.compile(r'<p class="error">\s*[^<\s]')


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.path}")
def test_any_input_to_a_page_gets_a_page_that_says_why_and_a_refused_form_changes_nothing(
    route: Route, fuzzed: tuple[FastAPI, dict[str, str], dict[str, str], str]
) -> None:
    app, keys, stored, url = fuzzed
    known = _page_values(url, keys, stored)
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)  # no lifespan: the fixture's
    answered: list[int] = []
    stored_sums = [table_checksums(url)]  # the data as the last request left it (a saved form changes it)

    @given(
        path=st.fixed_dictionaries({name: _path_value(name, known) for name in route.path_params}),
        query=st.fixed_dictionaries({name: _value(name, known) for name in route.query}).map(_given),
        form=st.fixed_dictionaries({name: _value(name, known) for name in route.form}).map(_given),
        extra=st.none() | st.tuples(st.sampled_from(["x", "<script>", "after"]), _ANY),
        signed=_SIGNED,
        via=_VIA,
        origin=_FROM,
        as_stored=st.booleans(),
        data=st.data(),
    )
    @settings(
        max_examples=EXAMPLES if route.page else EXAMPLES // 3,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(
        path: dict[str, str],
        query: dict[str, str],
        form: dict[str, str],
        extra: tuple[str, str] | None,
        signed: str,
        via: str,
        origin: dict[str, str],
        as_stored: bool,
        data: st.DataObject,
    ) -> None:
        if as_stored:  # every field and given parameter stored or valid, as the data is now: the page's own work
            now = known if route.method == "GET" else _page_values(url, keys, stored)  # after a form saved
            for values, names in ((path, route.path_params), (form, route.form), (query, tuple(query))):
                for name in names:
                    if now.get(name):
                        values[name] = data.draw(st.sampled_from(now[name]), label=name)
        address = _PARAM.sub(lambda match: quote(path[match[1]], safe=""), route.path)
        pairs = [*query.items(), *([extra] if extra else [])]
        key = keys.get(signed, "aqk_000000000000.not-a-secret" if signed == "not a key" else None)
        headers = {} if route.method == "GET" else dict(origin)
        cookies = {}
        if key is not None and via == "header":
            headers["Authorization"] = f"Bearer {key}"
        elif key is not None:
            cookies[SESSION_COOKIE] = key
        client.cookies.clear()
        client.cookies.update(cookies)
        assume(len(address) + len(urlencode(pairs)) < _URL_MAX)
        assume(len(urlencode(form)) <= MAX_BODY_BYTES)  # over it: BodyLimit's 413 before any route (test_body_limit)
        response = client.request(route.method, address, params=pairs, data=form or None, headers=headers)
        said = f"{route.method} {_short(address)} {_short(pairs)} {_short(form)} as {signed} by {via}"
        said += f": {response.status_code}"
        assert response.status_code < 500, f"{said}\n{response.text[:2000]}"
        assert not _TRACEBACK.search(response.text), f"{said}: a traceback\n{response.text[:2000]}"
        assert STORED_SCRIPT not in response.text, f"{said}: stored words shown unescaped"
        for value in [*path.values(), *(v for _, v in pairs), *form.values()]:
            if "<script" in value.lower():
                assert value not in response.text, f"{said}: {value!r} unescaped"
        _says_why(route, response, said)
        if route.method != "GET" and response.status_code >= 400:
            assert table_checksums(url) == stored_sums[-1], f"{said}: refused, yet data changed"
        elif route.method != "GET":  # sent, or answered with a page of its own: what it saved is the new baseline
            stored_sums.append(table_checksums(url))
        answered.append(response.status_code)

    call()
    assert any(status not in (401, 403) for status in answered), f"{route.method} {route.path}: never got past sign-in"


def _short(value: object) -> str:
    """A value as a failure's message names it: a huge one by its start."""
    text = repr(value)
    return text if len(text) <= 300 else f"{text[:300]}… ({len(text)} characters)"


def _says_why(route: Route, response: Any, said: str) -> None:
    """A page's refusal is a page saying why (or the sign-in form); a redirect stays on this server;
    what is not a page refuses in problem+json with a detail."""
    status, content_type = response.status_code, response.headers.get("content-type", "")
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        assert location.startswith("/") and not location.startswith("//"), f"{said}: redirected to {location!r}"
        return
    if status < 400:
        return
    if not route.page:
        assert content_type.startswith("application/problem+json"), f"{said}: {content_type}\n{response.text}"
        assert str(response.json().get("detail", "")).strip(), f"{said}: no detail\n{response.text}"
        return
    assert content_type.startswith("text/html"), f"{said}: a page answered {content_type}\n{response.text[:2000]}"
    sign_in = status == 401 and 'action="/login"' in response.text
    assert sign_in or _ERROR.search(response.text), f"{said}: no message says why\n{response.text[:2000]}"


@pytest.mark.parametrize(
    ("method", "address", "form", "status", "said"),
    [
        ("GET", "/?after=%00", None, 400, "A query parameter holds a NUL character (U+0000)."),
        ("GET", "/care/enquiries/%00", None, 400, "A path parameter holds a NUL character (U+0000)."),
        ("GET", "/care/meters/M%00", None, 400, "A path parameter holds a NUL character (U+0000)."),
        ("GET", "/care/meters/M?before=%00", None, 400, "A query parameter holds a NUL character (U+0000)."),
        ("POST", "/login", {}, 422, "The form&#39;s key: Field required."),
    ],
)
def test_a_page_refused_before_its_own_code_runs_says_why_on_a_page(
    fuzzed: tuple[FastAPI, dict[str, str], dict[str, list[str]], str],
    method: str,
    address: str,
    form: dict[str, str] | None,
    status: int,
    said: str,
) -> None:
    """The app's own refusals (a NUL in any route's address, a form field missing), on a page: they
    were problem+json, which a browser shows as raw JSON."""
    app, keys, _, _ = fuzzed
    client = TestClient(app, raise_server_exceptions=False)
    response = client.request(method, address, data=form, headers={"Authorization": f"Bearer {keys['admin']}"})
    assert (response.status_code, response.headers["content-type"]) == (status, "text/html; charset=utf-8")
    assert f'<p class="error">{said}</p>' in response.text, response.text


_PAGE_METHODS: dict[str, set[str]] = {}
for _route in ROUTES:
    if _route.page:
        _PAGE_METHODS.setdefault(_route.path, set()).add(_route.method)
#: Every page's address, with each method none of its routes takes (GET /logout: typed in the address bar).
_NOT_TAKEN = [
    (method, path)
    for path, methods in _PAGE_METHODS.items()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    if method not in methods
]


@pytest.mark.parametrize(("method", "path"), _NOT_TAKEN, ids=[f"{m} {p}" for m, p in _NOT_TAKEN])
def test_a_page_asked_with_a_method_it_does_not_take_says_so_on_a_page(method: str, path: str) -> None:
    """A 405 (routing's own, before any page's code or the database) was problem+json on a page's
    address too: ``GET /logout`` typed showed raw JSON."""
    app = create_app("postgresql://schema-only.invalid/aquami")  # a 405 is answered before any connection
    response = TestClient(app).request(method, _PARAM.sub("1", path))
    assert (response.status_code, response.headers["content-type"]) == (405, "text/html; charset=utf-8")
    said = f"This address is not opened with {method}: use the page&#39;s links and buttons."
    assert f'<p class="error">{said}</p>' in response.text, response.text
