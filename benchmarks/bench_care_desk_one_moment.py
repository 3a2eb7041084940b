"""The care desk's pages (/care/enquiries: server.web.care_desk) read in one moment (server.snapshot:
the rows, the list of what changed since the walk began above them, the categories and where the walk
began, in one read-only REPEATABLE READ transaction) against the same pages read query by query, each
on its own (autocommit, as before): what the snapshot's BEGIN and COMMIT cost a page.
One fresh database with ``--enquiries`` enquiries (benchmarks.bench_care_desk's fill); the first
``--pages`` pages of the unfiltered walk asked through the real app (a TestClient), following the
next-page links, the two ways in turn, ``--repeat`` times each; printed: each way's median page and
their ratio (1: the snapshot costs the page nothing).

    python -m benchmarks.bench_care_desk_one_moment [--enquiries 20000] [--pages 5] [--repeat 21]
"""

from __future__ import annotations

import argparse
import re
import time
from html import unescape

import psycopg
from fastapi.testclient import TestClient

from benchmarks.bench_care_desk import fill
from benchmarks.pages_in_turn import ONE_MOMENT, QUERY_BY_QUERY, medians_in_turn
from collector.migrate import migrate
from server.app import create_app
from server.auth import create_api_key
from server.web import care_desk
from tests.services import admin_url, create_database, drop_database

_NEXT = re.compile(r'<a href="([^"]+)">next page</a>')


def walk_ms(client: TestClient, key: str, pages: int) -> list[float]:
    """The first ``pages`` pages of the desk, each followed from the one before: each in milliseconds
    (wall clock, the whole answer read)."""
    times = []
    address = care_desk.PATH
    for _ in range(pages):
        started = time.perf_counter()
        answer = client.get(address, headers={"Authorization": f"Bearer {key}"})
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200 and 'class="desk"' in answer.text, answer.text[:300]
        following = _NEXT.search(answer.text)
        if following is None:
            break
        address = unescape(following.group(1))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enquiries", type=int, default=20000)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, args.enquiries)
            key = create_api_key(conn, "care", ["customer_care"])
        with TestClient(create_app(url)) as client:
            medians = medians_in_turn(care_desk, lambda: walk_ms(client, key, args.pages), args.repeat)
        one, each = medians[ONE_MOMENT], medians[QUERY_BY_QUERY]
        print(f"{args.enquiries} enquiries; the desk's first {args.pages} pages, {args.repeat} walks each way")
        said = f"median {one:.2f} ms against {each:.2f} ms query by query: {one / each:.2f}x"
        print(f"care desk page in one moment: {said}")
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
