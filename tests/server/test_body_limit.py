"""Request bodies are capped before any route reads them: a client without a key could make the
server hold a body of any size in memory before its 401 (300 MB raised it from 78 MB to 665 MB)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from server.app import create_app
from server.auth import create_api_key
from server.body_limit import MAX_BODY_BYTES, BodyLimit
from tests.server.live_server import running_server

T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, str]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "Ann", ["meterization"])
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M1', true)")
        conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M1', %s, 100.000)", (T0,))
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, key


def _over_the_cap() -> bytes:
    reason = "a" * (MAX_BODY_BYTES + 1)
    return json.dumps({"ts": "2026-11-01T07:00:00Z", "volume_m3": "5", "reason": reason}).encode()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/meters/M1/readings", "application/json"), ("/login", "application/x-www-form-urlencoded")],
)
def test_a_body_over_the_cap_is_a_413_problem_before_any_key_is_asked_for(api, path, content_type):
    client, _ = api
    response = client.post(path, content=_over_the_cap(), headers={"content-type": content_type})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["instance"]) == (413, path)
    assert f"limit of {MAX_BODY_BYTES} bytes" in problem["detail"]


def test_a_chunked_body_over_the_cap_is_a_413_problem(api):
    """No Content-Length to go by: the bytes are counted as they come."""
    client, _ = api
    body = _over_the_cap()

    def chunks() -> Iterator[bytes]:
        for at in range(0, len(body), 4096):
            yield body[at : at + 4096]

    response = client.post("/meters/M1/readings", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_the_largest_body_the_api_takes_is_under_the_cap(api, migrated_database_url):
    """A reason of 500 characters, each written as a JSON surrogate-pair escape (12 bytes)."""
    client, key = api
    reason = "a" + "\\ud83d\\ude00" * 499
    body = f'{{"ts": "2026-11-01T07:00:00Z", "volume_m3": "101", "reason": "{reason}"}}'.encode()
    assert len(body) < MAX_BODY_BYTES
    response = client.post(
        "/meters/M1/readings",
        content=body,
        headers={"content-type": "application/json", "Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["quality_reason"] == "a" + "\U0001f600" * 499


def test_a_chunked_body_under_the_cap_reaches_the_route_whole(api):
    client, key = api
    body = json.dumps({"ts": "2026-11-01T07:00:00Z", "volume_m3": "101", "reason": "site visit"}).encode()
    response = client.post(
        "/meters/M1/readings",
        content=iter([body[:10], body[10:]]),
        headers={"content-type": "application/json", "Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text


def test_the_middleware_stops_reading_an_endless_body_at_the_cap():
    read = 0
    sent: list[Message] = []
    reached: list[bool] = []

    async def endless() -> Message:
        nonlocal read
        read += 1024
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)

    scope: Scope = {"type": "http", "method": "POST", "path": "/login", "headers": []}
    asyncio.run(BodyLimit(app)(scope, endless, send))
    assert sent[0]["status"] == 413 and not reached
    assert read <= MAX_BODY_BYTES + 1024


def test_a_server_refuses_a_declared_300_mb_body_without_waiting_for_it(migrated_database_url):
    """Only the head is sent: the answer comes without the body (before, the server waited for it)."""
    answer = _answer_to_head(
        migrated_database_url,
        b"POST /meters/M1/readings HTTP/1.1\r\nHost: aquami\r\nContent-Type: application/json\r\n"
        b"Content-Length: 300000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"content-type: application/problem+json" in answer.lower()


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS"])
def test_a_request_of_a_method_without_a_body_declaring_one_over_the_cap_is_a_413_too(migrated_database_url, method):
    """The cap is on every request, whatever its method (server.problem_docs declares its 413 on
    every operation): a GET may carry a body, and a server that waited for 300 MB of one would hold
    the connection and its memory as for a POST's."""
    head = f"{method} /meters HTTP/1.1\r\nHost: aquami\r\nContent-Length: 300000000\r\n\r\n"
    answer = _answer_to_head(migrated_database_url, head.encode())
    assert answer.startswith(b"HTTP/1.1 413 "), answer


def _answer_to_head(database_url: str, head: bytes) -> bytes:
    """The head of a running server's answer to a request of which only ``head`` is sent."""
    with running_server(database_url) as port, socket.create_connection(("127.0.0.1", port)) as link:
        link.settimeout(60)  # generous: the answer needs no body, only a loaded machine's delay
        link.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = link.recv(4096)
            assert data, answer
            answer += data
    return answer
