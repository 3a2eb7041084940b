"""A method a path does not serve is a 405 problem whose ``Allow`` lists exactly the methods it serves.

Every path of the OpenAPI document is asked with every method, without a key (a served method is
refused 401 before its handler reads anything, or is a public read). Before, Open311 answered
``PUT /open311/v2/requests.json`` a 404 (its catch-all for resources GeoReport v2 has and aquami
does not serve took it), and ``Allow`` named the methods of one route only: ``HEAD
/open311/v2/requests.json`` said ``Allow: POST``, ``DELETE /meters/A/readings`` ``Allow: GET``.
HEAD is served wherever GET is, and listed with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from server.app import create_app

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.fixture(scope="module")
def client(timescale_admin_url: str, migrated_template: str) -> Iterator[TestClient]:
    from tests.services import migrated_database

    with migrated_database(timescale_admin_url, migrated_template) as url, TestClient(create_app(url)) as client:
        yield client


def _declared() -> dict[str, set[str]]:
    """Each path of the document, with "1" for its parameters, and the methods it declares there."""
    spec = create_app("postgresql://schema-only.invalid/aquami").openapi()
    return {re.sub(r"\{[^}]+\}", "1", path): {m.upper() for m in item} for path, item in spec["paths"].items()}


@pytest.mark.parametrize(("url", "declared"), sorted(_declared().items()))
def test_a_method_not_served_is_a_405_problem_allowing_the_served_ones(
    client: TestClient, url: str, declared: set[str]
) -> None:
    answers = {method: client.request(method, url) for method in METHODS}
    served = {method for method, response in answers.items() if response.status_code != 405}
    assert declared <= served, {m: answers[m].status_code for m in declared}
    assert ("HEAD" in served) == ("GET" in served), {m: answers[m].status_code for m in ("GET", "HEAD")}
    for method, response in answers.items():
        if response.status_code == 405:
            assert response.headers["content-type"].startswith("application/problem+json"), response.text
            if method != "HEAD":  # (an answer to HEAD has no body)
                assert response.json()["status"] == 405 and response.json()["detail"], response.text
            assert set(response.headers["allow"].split(", ")) == served, f"{method} {url}: {response.headers}"


#: Paths served outside the document: the web page, the documentation, Starlette's own route.
_UNDOCUMENTED_GETS = ["/", "/care/enquiries", "/care/enquiries/1", "/login", "/docs", "/openapi.json"]
_UNDOCUMENTED_GETS += ["/open311/v2/tokens/1.json"]  # (Open311's catch-all: a 404)


@pytest.mark.parametrize(
    "url", sorted(url for url, declared in _declared().items() if "GET" in declared) + _UNDOCUMENTED_GETS
)
def test_head_is_answered_as_get_without_the_body(client: TestClient, url: str) -> None:
    """RFC 9110 §9.3.2: the GET's status and headers (its Content-Length too), no body. Before,
    FastAPI's routes (all but /openapi.json) answered HEAD 405 with ``Allow: GET``."""
    get, head = client.get(url), client.head(url)
    assert (head.status_code, dict(head.headers)) == (get.status_code, dict(get.headers))
    assert head.content == b""


def test_the_405_of_a_path_serving_get_allows_head(client: TestClient) -> None:
    response = client.post("/meters")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["detail"] == "POST is not served at /meters; it serves GET, HEAD"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("url", ["/open311/v2/tokens/1.json", "/open311/v2/requests.xml"])
def test_a_resource_open311_does_not_serve_is_still_a_404(client: TestClient, method: str, url: str) -> None:
    response = client.request(method, url)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_open311_answers_a_method_its_requests_do_not_take_405_not_404(client: TestClient, method: str) -> None:
    response = client.request(method, "/open311/v2/requests.json")
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "GET, HEAD, POST"
    served = "it serves GET, HEAD, POST"
    assert response.json()["detail"] == f"{method} is not served at /open311/v2/requests.json; {served}"
