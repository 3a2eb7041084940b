"""The server's access log carries no API key, though the sign-in link has one in its query string."""

from __future__ import annotations

import http.client

import psycopg

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
