"""An address no route matches (a mistyped page address: ``/care/nothing``, ``/meterz``) is a 404
page for a browser, and the same problem+json as before for everyone else (server.problems,
server.accept). Before, a browser showed the problem document as raw JSON."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.accept import prefers_html
from server.app import create_app
from server.security_headers import POLICY

FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
UNROUTED = ["/care/nothing", "/meterz", "/enquiries-x", "/a/b/c?d=e", "/%3Cscript%3Ealert(1)%3C/script%3E"]


@pytest.fixture(scope="module")
def client(timescale_admin_url: str, migrated_template: str) -> Iterator[TestClient]:
    from tests.services import migrated_database

    with migrated_database(timescale_admin_url, migrated_template) as url, TestClient(create_app(url)) as client:
        yield client


def _is_the_404_page(response: Response, *, public_file: bool = False) -> None:
    assert (response.status_code, response.headers["content-type"]) == (404, "text/html; charset=utf-8"), response.text
    assert "There is no page at this address." in response.text
    assert '<a href="/">Back to meters and alerts</a>' in response.text
    assert "<script" not in response.text.lower()
    assert response.headers["content-security-policy"] == POLICY
    assert response.headers.get("cache-control") == (None if public_file else "no-store")


@pytest.mark.parametrize("path", UNROUTED)
def test_a_browser_asking_an_address_no_route_matches_gets_the_404_page(client: TestClient, path: str) -> None:
    _is_the_404_page(client.get(path, headers={"Accept": FIREFOX}))
    head = client.head(path, headers={"Accept": FIREFOX})
    assert (head.status_code, head.headers["content-type"], head.content) == (404, "text/html; charset=utf-8", b"")


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "application/problem+json", "text/html;q=0.5, */*"]
)
@pytest.mark.parametrize("path", UNROUTED)
def test_an_api_client_still_gets_the_404_problem(client: TestClient, path: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    if accept is None:  # httpx sends */* unless told otherwise: no Accept at all, as urllib sends
        client.headers.pop("accept", None)
    try:
        answer = client.get(path, headers=headers)
    finally:
        client.headers["accept"] = "*/*"
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json", answer.text
    assert answer.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Not Found",
        "instance": path.partition("?")[0].replace("%3C", "<").replace("%3E", ">"),
    }


def test_a_missing_file_under_static_is_the_page_to_a_browser_and_the_problem_to_its_stylesheet_link(
    client: TestClient,
) -> None:
    """The files' mount matches no route either: its 404 is chosen alike."""
    _is_the_404_page(client.get("/static/nothing.css", headers={"Accept": FIREFOX}), public_file=True)
    linked = client.get("/static/nothing.css", headers={"Accept": "text/css,*/*;q=0.1"})
    assert (linked.status_code, linked.headers["content-type"]) == (404, "application/problem+json")


@pytest.mark.parametrize(
    "path", ["/static", "/static/", "/static/nothing.css", "/static/a/b.png", "/static/..%2fapp.py"]
)
def test_every_miss_under_static_is_answered_as_an_unrouted_address_is(client: TestClient, path: str) -> None:
    """The mount's own misses (its folder, a file in no folder, an escape) are the 404 page to a
    browser, HEAD too, and the problem to anyone else, as any unrouted address (the bare /static is
    redirected to /static/ first, as /meters/ is to /meters). Only Cache-Control differs: none under
    /static/, whose answers are the same to everyone."""
    _is_the_404_page(client.get(path, headers={"Accept": FIREFOX}), public_file=True)
    head = client.head(path, headers={"Accept": FIREFOX})
    assert (head.status_code, head.headers["content-type"], head.content) == (404, "text/html; charset=utf-8", b"")
    answer = client.get(path, headers={"Accept": "*/*"})
    assert (answer.status_code, answer.headers["content-type"]) == (404, "application/problem+json")
    assert answer.json()["detail"] == "Not Found"
    assert client.get("/static/style.css", headers={"Accept": FIREFOX}).status_code == 200


def test_open311_s_and_the_api_s_own_404s_stay_problems_to_a_browser(client: TestClient) -> None:
    """A route matched: Open311's catch-all, an unknown meter. Those are the API's, asked by machines."""
    for path in ("/open311/v2/nothing.json", "/open311/v2/requests.xml", "/meters/no-such-meter"):
        answer = client.get(path, headers={"Accept": FIREFOX})
        assert answer.headers["content-type"] == "application/problem+json", (path, answer.status_code)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segment=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12),
    accept=st.lists(
        st.sampled_from(
            ["text/html", "application/json", "application/problem+json", "*/*", "text/*", "image/webp"]
        ).flatmap(lambda t: st.sampled_from([t, f"{t};q=0", f"{t};q=0.5", f"{t};q=0.9"])),
        max_size=4,
    ).map(",".join),
)
def test_an_unrouted_404_is_html_exactly_when_accept_ranks_html_first(
    client: TestClient, segment: str, accept: str
) -> None:
    path = f"/zz-{segment}/nothing"
    answer = client.get(path, headers={"Accept": accept})
    if prefers_html(accept):
        _is_the_404_page(answer)
    else:
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == "Not Found"
