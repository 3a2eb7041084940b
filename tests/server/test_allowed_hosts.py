"""The host names the server answers for (server.hosts, ``aquami server run --allowed-host``). Before,
a list's ``next`` link was built from whatever ``Host`` the request named: a client sending ``Host:
evil.example`` got links to that site (``/meters``, ``/billing/reads``). Any host is still answered
by default; with names given, a request for another is refused before any route runs."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aquami.cli import app as cli
from server.app import create_app
from server.auth import create_api_key
from server.hosts import allowed_host

PUBLIC = "water.example.org"


@pytest.fixture
def reader(migrated_database_url: str) -> dict[str, str]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, dma, registered) VALUES ('M1', 'D1', true), ('M2', 'D1', true)")
        return {"Authorization": f"Bearer {create_api_key(conn, 'rita', ['reader'])}"}


@pytest.fixture
def behind_a_proxy(migrated_database_url: str) -> Iterator[TestClient]:
    app = create_app(migrated_database_url, allowed_hosts=[PUBLIC, "*.water.example.org", "127.0.0.1"])
    with TestClient(app, base_url=f"https://{PUBLIC}") as client:
        yield client


def _next(client: TestClient, headers: dict[str, str], host: str) -> tuple[int, str | None]:
    answer = client.get("/meters?limit=1", headers={**headers, "Host": host})
    return answer.status_code, answer.json()["next"] if answer.status_code == 200 else answer.text


def test_a_forged_host_gets_no_links_to_another_site(behind_a_proxy: TestClient, reader: dict[str, str]) -> None:
    assert _next(behind_a_proxy, reader, PUBLIC) == (200, f"https://{PUBLIC}/meters?limit=1&cursor=M1")
    assert _next(behind_a_proxy, reader, "evil.example")[0] == 400
    assert _next(behind_a_proxy, reader, f"{PUBLIC}.evil.example")[0] == 400
    assert _next(behind_a_proxy, reader, f"evil-{PUBLIC}")[0] == 400
    # a name under the wildcard, another port, a local probe by address: answered
    assert _next(behind_a_proxy, reader, f"care.{PUBLIC}")[0] == 200
    assert _next(behind_a_proxy, reader, f"{PUBLIC}:8443")[0] == 200
    health = behind_a_proxy.get("/health", headers={"Host": "127.0.0.1:8000"})
    assert health.status_code == 200, health.text
    refused = behind_a_proxy.get("/health", headers={"Host": "localhost"})
    assert refused.status_code == 400 and refused.headers["x-content-type-options"] == "nosniff"


def test_a_host_not_served_is_refused_in_problem_json_saying_which_and_where_names_are_set(
    behind_a_proxy: TestClient, reader: dict[str, str]
) -> None:
    """Before, Starlette's plain text ``Invalid host header``, where every other error of the API is
    problem+json: a client was told neither the name refused nor how the names are set."""
    refused = behind_a_proxy.get("/meters?limit=1", headers={**reader, "Host": "evil.example:8443"})
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json() == {
        "type": "about:blank",
        "title": "Host not served",
        "status": 400,
        "detail": "this server does not answer for the host 'evil.example:8443' (the request's Host header); "
        "the names this server answers for are set by aquami server run --allowed-host (AQUAMI_ALLOWED_HOSTS)",
        "instance": "/meters",
    }
    assert PUBLIC not in refused.text  # the names served are not told to a client naming another
    for header in ("x-content-type-options", "x-frame-options", "cache-control"):
        assert header in refused.headers, header
    headless = behind_a_proxy.get("/health", headers={"Host": ""})
    assert headless.status_code == 400 and headless.json()["detail"].startswith("the request names no host")


def test_without_names_configured_any_host_is_answered(migrated_database_url: str, reader: dict[str, str]) -> None:
    """The default, as before: a server on a LAN answers whatever name or address it is reached by."""
    with TestClient(create_app(migrated_database_url)) as client:
        assert _next(client, reader, "aquami.lan") == (200, "http://aquami.lan/meters?limit=1&cursor=M1")


@pytest.mark.parametrize(
    ("given", "host"),
    [("Water.Example.org", PUBLIC), ("water.example.org.", PUBLIC), ("*.example.org", "*.example.org"),
     ("10.0.0.7", "10.0.0.7"), ("localhost", "localhost"),
     # an IPv6 address as a Host header carries it: bracketed, in its one canonical spelling (RFC 5952)
     ("::1", "[::1]"), ("[::1]", "[::1]"), ("2001:DB8:0:0::1", "[2001:db8::1]"), ("[2001:db8::1]", "[2001:db8::1]"),
     ("::ffff:10.0.0.7", "[::ffff:a00:7]")],
)  # fmt: skip
def test_a_host_name_is_written_as_it_is_compared(given: str, host: str) -> None:
    assert allowed_host(given) == host


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("*", "leave --allowed-host out"),
        ("https://water.example.org", "without a scheme"),
        ("water.example.org:443", "without a port"),
        ("[::1]:8000", "without a port"),
        ("fe80::1%eth0", "is not part of a Host header"),
        ("[::1", "an IPv6 address is written"),
        ("[fe80::zz]", "is no IPv6 address"),
        ("1:2:3", "without a port"),
        ("water..example.org", "letters, digits, hyphens and dots"),
        ("-water.example.org", "letters, digits, hyphens and dots"),
        ("wa ter.example.org", "letters, digits, hyphens and dots"),
    ],
)
def test_what_is_no_host_name_is_refused_by_the_command_before_it_starts(given: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        allowed_host(given)
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        cli,
        ["server", "run", "--database-url", "postgresql://127.0.0.1:1/none", "--allowed-host", given],
        terminal_width=400,
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for --allowed-host" in result.output and says in result.output


@pytest.fixture
def on_ipv6(migrated_database_url: str) -> Iterator[TestClient]:
    app = create_app(migrated_database_url, allowed_hosts=[PUBLIC, "::1", "[2001:DB8::1]"])
    with TestClient(app, base_url=f"https://{PUBLIC}") as client:
        yield client


def test_a_server_reached_by_its_ipv6_address_answers_for_it_listed(
    on_ipv6: TestClient, reader: dict[str, str]
) -> None:
    """Before, ``--allowed-host ::1`` (or ``[2001:db8::1]``) was refused as a name with a port, so a
    server reached by an IPv6 address could not list it. A ``Host`` header brackets the address
    (RFC 3986 §3.2.2), with or without a port; its spelling does not matter, its address does."""
    assert _next(on_ipv6, reader, "[::1]") == (200, "https://[::1]/meters?limit=1&cursor=M1")
    assert _next(on_ipv6, reader, "[::1]:8000") == (200, "https://[::1]:8000/meters?limit=1&cursor=M1")
    assert _next(on_ipv6, reader, "[2001:db8::1]:8000")[0] == 200
    assert _next(on_ipv6, reader, "[2001:DB8:0:0:0::1]:8443")[0] == 200  # the same address spelled long
    assert _next(on_ipv6, reader, "[0:0:0:0:0:0:0:1]")[0] == 200
    assert _next(on_ipv6, reader, PUBLIC)[0] == 200


@pytest.mark.parametrize(
    "host",
    [
        "[2001:db8::2]:8000",  # another address
        "[::2]",
        "::1",  # not bracketed: no Host header names an IPv6 address so
        "[::1]x",
        "[::1]:80:80",
        "[fe80::1%25eth0]",
        "[::1",
        "127.0.0.1",  # the IPv4 loopback is not listed, only the IPv6 one
    ],
)
def test_another_ipv6_host_is_refused_in_problem_json(on_ipv6: TestClient, reader: dict[str, str], host: str) -> None:
    refused = on_ipv6.get("/meters?limit=1", headers={**reader, "Host": host})
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["title"] == "Host not served"
    assert refused.json()["detail"].startswith(f"this server does not answer for the host {host!r}")
