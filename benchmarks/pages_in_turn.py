"""Ways of serving a page timed in turn (:func:`medians_in_turn_of`), and a page read in one moment
(server.snapshot) timed so against the same page read query by query (:func:`medians_in_turn`).

The benchmarks of pages that read in one moment (bench_meter_page_one_moment, bench_care_desk_one_moment)
swap the page module's ``one_moment`` for a stand-in that opens no transaction, so each query runs on
its own (autocommit), as before: the same page, the same data, the same client. The two ways are
viewed in turn, so that the machine's load falls on both alike; a first view each is not measured (the
pool's connection is made then).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg

ONE_MOMENT, QUERY_BY_QUERY = "one moment", "query by query"


def query_by_query(_conn: psycopg.Connection[Any]) -> AbstractContextManager[None]:
    """The baseline: no snapshot, each of the page's queries on its own as before."""
    return nullcontext()


def medians_in_turn_of(
    ways: Iterable[str], view: Callable[[str], list[float]], repeat: int, *, warm_up: bool = True
) -> dict[str, float]:
    """Each of ``ways``' median of the times ``view(way)`` gives (milliseconds, one or more a view),
    ``repeat`` views each, the ways in turn, so that the machine's load falls on all alike; with
    ``warm_up``, a first view each first, not measured (a pool's connection is made then)."""
    ways = list(ways)
    times: dict[str, list[float]] = {way: [] for way in ways}
    for way in ways if warm_up else ():
        view(way)
    for _ in range(repeat):
        for way in ways:
            times[way] += view(way)
    return {way: statistics.median(taken) for way, taken in times.items()}


def medians_in_turn(page_module: Any, view: Callable[[], list[float]], repeat: int) -> dict[str, float]:
    """Each way's median of the times ``view`` gives (milliseconds, one or more pages a view): the page
    module's own ``one_moment``, and :func:`query_by_query` in its place, ``repeat`` views each, in
    turn. The module's ``one_moment`` is put back whatever happens."""
    snapshot = page_module.one_moment
    ways: dict[str, Callable[[psycopg.Connection[Any]], AbstractContextManager[None]]] = {
        ONE_MOMENT: snapshot,
        QUERY_BY_QUERY: query_by_query,
    }

    def viewed(way: str) -> list[float]:
        page_module.one_moment = ways[way]
        return view()

    try:
        return medians_in_turn_of(ways, viewed, repeat)
    finally:
        page_module.one_moment = snapshot
