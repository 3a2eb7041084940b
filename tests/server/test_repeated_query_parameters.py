"""A query parameter given more than once is refused (400 naming it), not read as its last value:
``GET /alerts?meter_id=M1&meter_id=M2`` answered M2's alerts, 200, and ``limit=1&limit=50`` a page
of 50. A list-valued parameter takes repeats (server.query_params)."""

from __future__ import annotations

import ast
import re
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, List, Literal, Optional  # noqa: UP035 (SHAPES has the old spellings)

import psycopg
import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

import server
from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key
from server.problems import install_problem_handlers
from server.query_params import KnownQueryRoute, takes_every_value
from tests.server.test_alerts_api import alert

Api = tuple[TestClient, dict[str, dict[str, str]]]


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[Api]:
    """A client on a database with two meters' alerts, and the headers of an admin's and a billing key."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"test {role}", [role]) for role in ("admin", "billing")}
        with conn.transaction():
            save_changes(conn, AlertChanges(opened=[alert(AlertKind.LEAK, "M1", 0), alert(AlertKind.BURST, "M2", 1)]))
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}


def test_a_filter_given_twice_is_refused_naming_it(api: Api) -> None:
    """Before, the last value won: M2's alerts, 200, under a request that also asked for M1's."""
    client, headers = api
    once = client.get("/alerts", params={"meter_id": "M1"}, headers=headers["billing"])
    assert [a["meter_id"] for a in once.json()["items"]] == ["M1"]
    twice = client.get("/alerts", params=[("meter_id", "M1"), ("meter_id", "M2")], headers=headers["billing"])
    assert twice.status_code == 400, twice.text
    assert twice.headers["content-type"].startswith("application/problem+json")
    problem = twice.json()
    assert problem["title"] == "Query parameter given more than once"
    assert problem["errors"] == [{"location": "query/meter_id", "message": "given twice: give it once"}]
    assert problem["detail"] == (
        "query/meter_id: given twice: give it once; "
        "GET /alerts takes one value of each of status, kind, meter_id, dma, limit, cursor"
    )


def test_a_limit_given_twice_is_refused_not_read_as_its_last(api: Api) -> None:
    """Before, ``limit=1&limit=50`` answered both alerts on one page (50), not one and a ``next``."""
    client, headers = api
    assert len(client.get("/alerts", params={"limit": "1"}, headers=headers["billing"]).json()["items"]) == 1
    three = [("limit", "1"), ("status", "open"), ("limit", "50"), ("limit", "50"), ("status", "open")]
    answer = client.get("/alerts", params=three, headers=headers["billing"])
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [
        {"location": "query/limit", "message": "given 3 times: give it once"},
        {"location": "query/status", "message": "given twice: give it once"},
    ]


def test_the_key_comes_first_then_an_unknown_parameter(api: Api) -> None:
    client, headers = api
    repeated = [("meter_id", "M1"), ("meter_id", "M2")]
    assert client.get("/alerts", params=repeated).status_code == 401
    assert client.get("/open311/v2/requests.json", params=[("status", "open"), ("status", "closed")]).status_code == 401
    unknown = client.get("/alerts", params=[*repeated, ("meter", "M1")], headers=headers["billing"])
    assert unknown.status_code == 400
    assert unknown.json()["title"] == "Unknown query parameter"


def test_every_documented_operation_refuses_each_of_its_parameters_given_twice(api: Api) -> None:
    """Each query parameter of each operation of the OpenAPI document, given twice (with an admin's
    key, so the key passes), is refused naming it, and the operation documents it among its 400s;
    one taking no parameter of its own does not say it."""
    client, headers = api
    spec = client.get("/openapi.json").json()
    asked, operations_asked = 0, 0
    for path, operations in spec["paths"].items():
        url = re.sub(r"\{[^}]+\}", "X1", path)
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            said = "given more than once" in operation["responses"]["400"]["description"]
            assert said == bool(names), f"{method.upper()} {path}"
            for name in names:
                answer = client.request(
                    method.upper(), url, params=[(name, "1"), (name, "2")], headers=headers["admin"]
                )
                assert answer.status_code == 400, f"{method.upper()} {path} {name}: {answer.status_code} {answer.text}"
                assert answer.json()["errors"] == [
                    {"location": f"query/{name}", "message": "given twice: give it once"}
                ]
                asked += 1
            operations_asked += bool(names)
    assert (operations_asked, asked) == (8, 43)


def test_open311_takes_repeats_of_what_it_ignores_not_of_a_filter(api: Api) -> None:
    """``jurisdiction_id`` and a query's ``api_key`` are taken and ignored (one server is one utility;
    the key is the form's or the header's): no value of theirs is chosen, so a repeat changes
    nothing. GeoReport v2's filters take several values comma-separated, one parameter."""
    client, headers = api
    ignored = [("jurisdiction_id", "a.example"), ("jurisdiction_id", "b.example"), ("api_key", "x"), ("api_key", "y")]
    assert client.get("/open311/v2/services.json", params=ignored).status_code == 200
    listed = client.get(
        "/open311/v2/requests.json", params=[*ignored, ("status", "open,closed")], headers=headers["admin"]
    )
    assert listed.status_code == 200, listed.text
    two = client.get(
        "/open311/v2/requests.json", params=[("status", "open"), ("status", "closed")], headers=headers["admin"]
    )
    assert two.status_code == 400
    assert two.json()["detail"] == (
        "query/status: given twice: give it once; GET /open311/v2/requests.json takes one value of each of "
        "service_request_id, service_code, start_date, end_date, status, and any number of api_key, jurisdiction_id"
    )


def _listing_app() -> FastAPI:
    """An operation taking a list (``tag``) and two scalars, on the API's route class and problems."""
    app = FastAPI()
    install_problem_handlers(app)
    app.router.route_class = KnownQueryRoute

    @app.get("/things")
    def things(
        tag: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies a default)
        limit: int = 10,
        q: str | None = None,
    ) -> dict[str, object]:
        return {"tag": tag, "limit": limit, "q": q}

    return app


LISTING = TestClient(_listing_app())


@given(st.lists(st.tuples(st.sampled_from(["tag", "limit", "q"]), st.sampled_from(["1", "2", ""])), max_size=6))
def test_a_list_valued_parameter_takes_repeats_and_a_scalar_does_not(query: list[tuple[str, str]]) -> None:
    """Whatever the query's order: refused exactly when a scalar is repeated, naming each repeated
    scalar with its count in the order first given; else every value of the list kept, in order."""
    counts = Counter(name for name, _ in query)
    answer = LISTING.get("/things", params=query)
    repeated = [name for name in counts if name != "tag" and counts[name] > 1]
    if repeated:
        assert answer.status_code == 400, answer.text
        times = {2: "twice", 3: "3 times", 4: "4 times", 5: "5 times", 6: "6 times"}
        expected = [{"location": f"query/{n}", "message": f"given {times[counts[n]]}: give it once"} for n in repeated]
        assert answer.json()["errors"] == expected
        assert answer.json()["detail"].endswith(
            "GET /things takes one value of each of limit, q, and any number of tag"
        )
    else:
        assert answer.status_code in (200, 422), answer.text  # limit="" is not a number: validated as before
        if answer.status_code == 200:
            assert answer.json()["tag"] == [value for name, value in query if name == "tag"]


#: The shapes of query parameter an operation may declare: scalars, optional ones, containers alone,
#: optional, in Annotated, and the old typing spellings.
SHAPES: list[object] = [
    str,
    int,
    str | None,
    Optional[int],  # noqa: UP045 (the old spelling, as a route may still have it)
    Literal["1", "2"],
    list[str],
    list[int] | None,
    Optional[List[int]],  # noqa: UP006, UP045
    Annotated[list[str] | None, "a note"],
    tuple[str, ...],
    set[str],
    frozenset[int],
    Sequence[str],
    deque[str],
]


def _echo_app(shape: object) -> FastAPI:
    """A plain FastAPI app (no check of its own) echoing what it read of ``x`` given as ``shape``."""
    app = FastAPI()

    def echo(x: Any) -> dict[str, object]:
        return {"x": list(x) if isinstance(x, set | frozenset | deque | tuple) else x}

    echo.__annotations__["x"] = Annotated[shape, Query()]  # an object: this module's annotations are text
    app.get("/echo")(echo)
    return app


@pytest.mark.parametrize("shape", SHAPES, ids=repr)
def test_a_parameter_is_taken_repeated_exactly_when_fastapi_reads_every_value(shape: object) -> None:
    """server.query_params asks itself which parameters FastAPI reads every value of (before, it
    asked fastapi._compat, a private module): here FastAPI, given ``x=1&x=2``, says by what it reads."""
    answer = TestClient(_echo_app(shape)).get("/echo", params=[("x", "1"), ("x", "2")])
    assert answer.status_code == 200, answer.text
    read = answer.json()["x"]
    reads_every_value = isinstance(read, list) and sorted(str(v) for v in read) == ["1", "2"]
    assert reads_every_value or str(read) == "2", read  # a scalar: its last value
    assert takes_every_value(shape) is reads_every_value


def test_the_server_imports_no_private_module_of_fastapi_or_starlette() -> None:
    """A private module (``fastapi._compat``) may change in any release, and a routine upgrade would
    break the query checks at import, or worse, make them answer otherwise."""
    private = []
    for path in sorted(Path(server.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            private += [f"{path.name}: {name}" for name in names if re.match(r"(fastapi|starlette)(\.\w+)*\._", name)]
    assert private == []
