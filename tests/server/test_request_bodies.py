"""A JSON body that cannot be read as the operation's JSON is a 422 problem saying why, after the key
(server.exact_json): a member named twice (before, the last one silently won), a body that is not
JSON or not UTF-8 (before, "JSON decode error" at a character offset, to anyone, or a bare 400), one
sent as another type (before, pydantic's "Input should be a valid dictionary…")."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key
from server.exact_json import NamedTwiceError, loads_exact
from tests.server.test_alerts_api import alert  # an alert detected hours after T0, as the alerts API's tests make

JSON = {"Content-Type": "application/json"}
SENT_AS_JSON = "the body is JSON, sent as application/json, not"
NAMES = st.text(st.characters(codec="utf-8"), max_size=8)
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3))


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """A client, an admin's headers, and an open alert's dismissal address."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "test admin", ["admin"])
        leak = alert(AlertKind.LEAK, "M1", 0)
        with conn.transaction():
            save_changes(conn, AlertChanges(opened=[leak]))
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, {"Authorization": f"Bearer {key}"}, f"/alerts/{leak.alert_id}/dismiss"


def _json_operations(client: TestClient) -> list[tuple[str, str]]:
    """(method, address) of every operation of the document taking a JSON body, its path's
    parameters filled in."""
    spec = client.get("/openapi.json").json()
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "2026-01-01T00:00:00Z", path)))
    return found


def _encoded(members: list[tuple[str, Any]]) -> str:
    return "{" + ", ".join(f"{json.dumps(name)}: {json.dumps(value)}" for name, value in members) + "}"


@given(members=st.dictionaries(NAMES, VALUES, max_size=4), name=NAMES, first=VALUES, second=VALUES)
def test_an_object_naming_a_member_twice_is_refused_wherever_it_is(
    members: dict[str, Any], name: str, first: Any, second: Any
) -> None:
    """Whatever the object, a member named twice in it is refused naming where; the same object, nested
    in a list in another, is refused naming the path to it. Without a repeat, the value is what
    ``json.loads`` reads, numbers as Decimal."""
    repeated = [(name, first), *members.items(), (name, second)]
    with pytest.raises(NamedTwiceError) as refused:
        loads_exact(_encoded(repeated))
    assert refused.value.location == f"body/{name}"
    with pytest.raises(NamedTwiceError) as nested:
        loads_exact(f'{{"a": 1, "items": [0, {_encoded(repeated)}]}}')
    assert nested.value.location == f"body/items/1/{name}"
    once = {**members, name: second, "n": 0.1}
    assert loads_exact(json.dumps(once)) == json.loads(json.dumps(once), parse_float=Decimal)


def test_a_member_named_twice_is_refused_and_nothing_is_saved(api) -> None:
    """Before, the last of the two reasons was taken: the alert was dismissed, 200, for the reason
    its client did not send first."""
    client, admin, dismiss = api
    body = '{"reason": "x", "reason": "a customer fixed the tap"}'
    answer = client.post(dismiss, content=body, headers={**admin, **JSON})
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert problem["title"] == "Invalid request"
    assert problem["errors"] == [
        {"location": "body/reason", "message": "given more than once: an object names each member once"}
    ]
    assert problem["detail"] == "body/reason: given more than once: an object names each member once"
    alerts = client.get("/alerts", params={"status": "dismissed"}, headers=admin).json()["items"]
    assert alerts == []
    once = client.post(dismiss, json={"reason": "a customer fixed the tap"}, headers=admin)
    assert once.status_code == 200, once.text


def test_every_operation_taking_json_refuses_a_member_named_twice(api) -> None:
    """Each operation of the document taking a JSON body (bar Open311's, which refuses it itself as a
    400, as its form's field given twice), with an admin's key."""
    client, admin, _ = api
    asked = 0
    for method, address in _json_operations(client):
        if address.startswith("/open311/"):
            continue
        answer = client.request(method, address, content='{"note": "a", "note": "b"}', headers={**admin, **JSON})
        assert answer.status_code == 422, f"{method} {address}: {answer.status_code} {answer.text}"
        assert answer.json()["errors"][0]["location"] == "body/note", f"{method} {address}"
        asked += 1
    assert asked == 4


@pytest.mark.parametrize(
    ("body", "headers", "said"),
    [
        ('{"reason": "a real reason"}', {"Content-Type": "text/plain"}, f"{SENT_AS_JSON} text/plain"),
        ("reason=a+real+reason", {"Content-Type": "application/x-www-form-urlencoded"},
         f"{SENT_AS_JSON} application/x-www-form-urlencoded"),
        ('{"reason": "a real reason"}', {}, f"{SENT_AS_JSON} a body without a Content-Type"),
        ('{"reason": ', JSON, "the body is not JSON: Expecting value (line 1, column 12)"),
        (b'{"reason": "caf\xe9 tap"}', JSON, "the body is not UTF-8 text (JSON is UTF-8)"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_the_operation_s_json_is_said_so_after_the_key(
    api, body: str | bytes, headers: dict[str, str], said: str
) -> None:
    """Before: text/plain, a form or no Content-Type were pydantic's "Input should be a valid dictionary
    or object to extract fields from"; a broken body "body/11: JSON decode error", a 422 to anyone,
    key or none; a body not UTF-8 a bare 400 "There was an error parsing the body". Without a key, each
    is a 401 now, as a body of the wrong fields is."""
    client, admin, dismiss = api
    answer = client.post(dismiss, content=body, headers={**admin, **headers})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"location": "body", "message": said}]
    assert answer.json()["detail"] == f"body: {said}"
    assert client.post(dismiss, content=body, headers=headers).status_code == 401


def test_the_document_s_422_says_an_unreadable_body_is_located_at_body(api) -> None:
    """Each operation reading a JSON body documents its 422 as the body's too, and answers a body
    that is not JSON so (at ``body``, not a field); before, every 422 said "naming each invalid
    field". An operation taking no JSON body does not say it."""
    client, admin, _ = api
    spec = client.get("/openapi.json").json()
    readers = {(method, address) for method, address in _json_operations(client) if not address.startswith("/open311/")}
    said_at_body = "or, at body, why the body cannot be read: not JSON, not UTF-8, or sent as another type than JSON"
    documented = 0
    for path, operations in spec["paths"].items():
        address = re.sub(r"\{[^}]+\}", "2026-01-01T00:00:00Z", path)
        for method, operation in operations.items():
            if "422" not in operation["responses"]:
                continue
            description = operation["responses"]["422"]["description"]
            assert (said_at_body in description) == ((method.upper(), address) in readers), f"{method} {path}"
            documented += 1
    assert documented == 18  # Open311's POST requests.json: its Idempotency-Key reused
    for method, address in readers:
        answer = client.request(method, address, content='{"note": ', headers={**admin, **JSON})
        assert answer.status_code == 422, f"{method} {address}: {answer.text}"
        assert [e["location"] for e in answer.json()["errors"]] == ["body"], f"{method} {address}"
    assert len(readers) == 4
