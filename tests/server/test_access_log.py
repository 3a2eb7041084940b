"""The server's access log carries no API key, though the sign-in link has one in its query string."""

from __future__ import annotations

import http.client

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from server.access_log import _hide_keys
from server.auth import create_api_key
from tests.server.live_server import running_server


def test_the_sign_in_link_s_key_is_not_written_to_the_access_log(migrated_database_url):
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "demo admin", ["admin"])
    logs: list[str] = []
    with running_server(migrated_database_url, log=logs) as port:
        # the parameter's name percent-encoded is the same parameter to the server
        for query in (f"key={key}&x=1", f"k%65y={key}", f"x=1&%6B%65%79={key}"):
            link = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            link.request("GET", f"/login?{query}", headers={"Sec-Fetch-Site": "none"})  # pasted
            assert link.getresponse().status == 303  # signed in
            link.close()
    (log,) = logs
    secret = key.split(".", 1)[1]
    assert "GET /login?key=***&x=1 " in log, log  # the request is still logged, its key hidden
    assert "GET /login?k%65y=*** " in log and "GET /login?x=1&%6B%65%79=*** " in log, log
    assert secret not in log


def test_an_open311_clients_api_key_in_the_query_is_not_written_to_the_access_log(migrated_database_url):
    """GeoReport v2 names the key ``api_key``; a client that puts it in the query string (which the
    server takes and ignores) had it logged whole: before, `GET
    /open311/v2/requests.json?api_key=aqk_… HTTP/1.1" 401` in the access log."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "customer app", ["customer_app"])
    logs: list[str] = []
    with running_server(migrated_database_url, log=logs) as port:
        for path in (
            f"/open311/v2/services.json?jurisdiction_id=x&api_key={key}",
            f"/open311/v2/requests.json?api_%6Bey={key}",
            f"/meters?token={key}",  # a key under any name: its value gives it away
        ):
            link = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            link.request("GET", path)
            link.getresponse().read()
            link.close()
    (log,) = logs
    secret = key.split(".", 1)[1]
    assert "GET /open311/v2/services.json?jurisdiction_id=x&api_key=*** " in log, log
    assert "GET /open311/v2/requests.json?api_%6Bey=*** " in log and "GET /meters?token=*** " in log, log
    assert secret not in log


_PLAIN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.%", max_size=12)


@given(
    before=st.lists(st.tuples(_PLAIN, _PLAIN), max_size=3),
    name=st.sampled_from(["key", "KEY", "api_key", "Api_Key", "k%65y", "api%5Fkey", "token", ""]),
    after=st.lists(st.tuples(_PLAIN, _PLAIN), max_size=3),
    secret=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=20, max_size=43
    ),
)
def test_no_key_survives_in_a_request_line_whatever_parameters_surround_it(
    before: list[tuple[str, str]], name: str, after: list[tuple[str, str]], secret: str
) -> None:
    pairs = [*before, (name, f"aqk_0123456789ab.{secret}"), *after]
    query = "&".join(f"{k}={v}" for k, v in pairs)
    line = _hide_keys(f"GET /open311/v2/requests.json?{query} HTTP/1.1")
    assert secret not in line
    assert line.startswith("GET /open311/v2/requests.json?") and line.endswith(" HTTP/1.1")
