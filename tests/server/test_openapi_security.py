"""The OpenAPI document says which operations need a key, how a key is presented, and which roles
each operation admits, as the server really does.

Every operation of the document is called for real: without a key, with an admin's key presented
each way the document's ``securitySchemes`` describe, and with a key of each single role. Before,
the document declared no scheme and no operation's ``security``: a client generated from it (the
billing system's) did not know to send a key, and met only 401s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import ROLES, create_api_key


@pytest.fixture
def served(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A client, and a key of each role alone."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"test {role}", [role]) for role in ROLES}
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, keys


def presented(scheme: dict[str, Any], key: str) -> dict[str, str]:
    """The headers that present ``key`` as ``scheme`` (a security scheme object) says."""
    if scheme["type"] == "http" and scheme["scheme"] == "bearer":
        return {"Authorization": f"Bearer {key}"}
    assert scheme["type"] == "apiKey", scheme
    if scheme["in"] == "header":
        return {scheme["name"]: key}
    assert scheme["in"] == "cookie", scheme
    return {"Cookie": f"{scheme['name']}={key}"}


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method.upper(), re.sub(r"\{[^}]+\}", "1", path), operation


def test_security_declared_is_the_security_served(served: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = served
    spec = client.get("/openapi.json").json()
    schemes: dict[str, dict[str, Any]] = spec.get("components", {}).get("securitySchemes", {})
    wrong: list[str] = []
    for method, url, operation in _operations(spec):

        def status(headers: dict[str, str], method: str = method, url: str = url) -> int:
            # (a write's key is checked before its body: an empty one is enough)
            body: dict[str, Any] | None = {} if method in {"POST", "PUT"} else None
            return client.request(method, url, headers=headers, json=body).status_code

        where = f"{method} {url}"
        if "security" not in operation:
            wrong.append(f"{where}: no security declared (public or not)")
            continue
        requirement = {name for alternative in operation["security"] for name in alternative}
        unkeyed = status({})
        if (unkeyed == 401) != bool(requirement):
            wrong.append(f"{where}: answers {unkeyed} without a key, declaring security {operation['security']}")
        if not requirement:
            continue
        for name, scheme in schemes.items():
            accepted = status(presented(scheme, keys["admin"])) != 401
            if accepted != (name in requirement):
                wrong.append(f"{where}: an admin key as {name} is {'accepted' if accepted else 'refused'}")
        admitted = set(operation.get("x-roles", ()))
        for role in ROLES:  # (as a bearer: every keyed operation takes it)
            refused = status({"Authorization": f"Bearer {keys[role]}"}) == 403
            if refused == (role in admitted):
                wrong.append(f"{where}: a {role} key is {'refused' if refused else 'admitted'}, x-roles {admitted}")
    assert not wrong, "\n".join(wrong)


def test_the_schemes_are_the_ways_a_key_is_presented() -> None:
    """Bearer, X-API-Key, and the web page's cookie; the key's format said."""
    spec = create_app("postgresql://schema-only.invalid/aquami").openapi()
    schemes = spec["components"]["securitySchemes"]
    assert {(s["type"], s.get("scheme") or f"{s['in']}:{s['name']}") for s in schemes.values()} == {
        ("http", "bearer"),
        ("apiKey", "header:X-API-Key"),
        ("apiKey", "cookie:aquami_key"),
    }
    assert all(scheme["description"].strip() for scheme in schemes.values())
