"""The sign-in's and the forms' check that a request came from the server's own page (server.origins)
compares an IPv6 host in its one canonical spelling, on both sides, as ``--allowed-host`` does
(server.hosts.ipv6_host): ``[0:0:0:0:0:0:0:1]`` and ``[::1]`` are one host, whatever the case of the
hex digits, the zeros left in or out, and a default port written or not. Before, the ``Origin`` was
compared as written with the address the request's ``Host`` gave: a browser's post to a server whose
``Host`` a client or proxy spelled otherwise was refused as another site's form."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import assume, given
from hypothesis import strategies as st
from starlette.requests import Request

from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key
from server.origins import from_another_site

#: addresses with runs of zero groups (where spellings differ most), and any at all
_GROUPS = st.lists(st.sampled_from([0, 0, 0, 1, 0xAB, 0xFFFF]) | st.integers(0, 0xFFFF), min_size=8, max_size=8)
ADDRESSES = _GROUPS.map(lambda groups: ipaddress.IPv6Address(sum(g << (16 * (7 - i)) for i, g in enumerate(groups))))


@st.composite
def _spelling(draw: st.DrawFn, address: ipaddress.IPv6Address) -> str:
    """``address`` written as RFC 4291 §2.2 lets it be: each group in either case with or without its
    leading zeros, and any one run of zero groups written ``::`` or not."""
    groups = [(int(address) >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    texts = []
    for group in groups:
        digits = format(group, "x").rjust(draw(st.integers(len(format(group, "x")), 4)), "0")
        texts.append("".join(c.upper() if draw(st.booleans()) else c for c in digits))
    runs = [(i, j) for i in range(8) for j in range(i + 1, 9) if not any(groups[i:j])]
    compressed: bool = draw(st.booleans())
    if runs and compressed:
        i, j = draw(st.sampled_from(runs))
        return ":".join(texts[:i]) + "::" + ":".join(texts[j:])
    return ":".join(texts)


@st.composite
def _authority(draw: st.DrawFn, address: ipaddress.IPv6Address, port: int) -> str:
    """``[address]:port``, the default port (80) written or left out."""
    host = f"[{draw(_spelling(address))}]"
    return host if port == 80 and draw(st.booleans()) else f"{host}:{port}"


def _posted(host: str, **headers: str) -> Request:
    """A form post to /login as the server receives it, with ``Host: host`` and ``headers``."""
    sent = [(b"host", host.encode())] + [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("0.0.0.0", 8000),
        "path": "/login",
        "root_path": "",
        "query_string": b"",
        "headers": sent,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("[::1]:8000", "http://[0:0:0:0:0:0:0:1]:8000"),
        ("[2001:DB8::A]", "http://[2001:db8:0:0::a]:80"),
        ("[::ffff:10.0.0.7]:8000", "http://[::ffff:a00:7]:8000"),
    ],
)
def test_an_ipv6_host_spelled_two_ways_is_the_server_s_own(host: str, origin: str) -> None:
    assert not from_another_site(_posted(host, Origin=origin))


@given(data=st.data(), address=ADDRESSES, port=st.sampled_from([80, 8000]))
def test_the_same_ipv6_host_spelled_any_way_is_the_server_s_own(
    data: st.DataObject, address: ipaddress.IPv6Address, port: int
) -> None:
    host, origin = data.draw(_authority(address, port)), data.draw(_authority(address, port))
    assert not from_another_site(_posted(host, Origin=f"http://{origin}"))
    assert not from_another_site(_posted(host, Referer=f"http://{origin}/care/enquiries/7"))
    assert not from_another_site(_posted(origin, Origin=f"HTTP://{host}"))


@given(data=st.data(), address=ADDRESSES, other=ADDRESSES, port=st.sampled_from([80, 8000]))
def test_another_ipv6_host_or_port_is_another_site_however_spelled(
    data: st.DataObject, address: ipaddress.IPv6Address, other: ipaddress.IPv6Address, port: int
) -> None:
    assume(address != other)
    host = data.draw(_authority(address, port))
    assert from_another_site(_posted(host, Origin=f"http://{data.draw(_authority(other, port))}"))
    assert from_another_site(_posted(host, Referer=f"http://{data.draw(_authority(other, port))}/"))
    elsewhere = 8080 if port == 80 else 80
    assert from_another_site(_posted(host, Origin=f"http://{data.draw(_authority(address, elsewhere))}"))
    assert from_another_site(_posted(host, Origin=f"https://{data.draw(_authority(address, port))}"))


@pytest.fixture
def sign_in(migrated_database_url: str) -> Iterator[tuple[TestClient, str]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "care desk", ["customer_care"])
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, key


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("[::1]:8000", "http://[0:0:0:0:0:0:0:1]:8000"),
        ("[0:0:0:0:0:0:0:1]:8000", "http://[::1]:8000"),
        ("[2001:DB8::A]", "http://[2001:db8:0:0::a]:80"),
    ],
)
def test_the_sign_in_form_posted_from_the_server_s_own_ipv6_page_signs_in(
    sign_in: tuple[TestClient, str], host: str, origin: str
) -> None:
    """The whole server: the form posted with its ``Host`` and ``Origin`` spelled differently signs
    in (303 and a session). Before: 403, "Sign in here, not from another site's form."."""
    client, key = sign_in
    posted = client.post("/login", data={"key": key}, headers={"Host": host, "Origin": origin}, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    assert posted.headers["set-cookie"].startswith(f"{SESSION_COOKIE}=")
    refused = client.post(
        "/login", data={"key": key}, headers={"Host": host, "Origin": "http://[::2]:8000"}, follow_redirects=False
    )
    assert refused.status_code == 403 and "not from another site" in refused.text
