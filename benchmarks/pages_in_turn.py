"""A page read in one moment (server.snapshot) timed against the same page read query by query, in turn.

The benchmarks of pages that read in one moment (bench_meter_page_one_moment, bench_care_desk_one_moment)
swap the page module's ``one_moment`` for a stand-in that opens no transaction, so each query runs on
its own (autocommit), as before: the same page, the same data, the same client. The two ways are
viewed in turn, so that the machine's load falls on both alike; a first view each is not measured (the
pool's connection is made then).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg

ONE_MOMENT, QUERY_BY_QUERY = "one moment", "query by query"


def query_by_query(_conn: psycopg.Connection[Any]) -> AbstractContextManager[None]:
    """The baseline: no snapshot, each of the page's queries on its own as before."""
    return nullcontext()


def medians_in_turn(page_module: Any, view: Callable[[], list[float]], repeat: int) -> dict[str, float]:
    """Each way's median of the times ``view`` gives (milliseconds, one or more pages a view): the page
    module's own ``one_moment``, and :func:`query_by_query` in its place, ``repeat`` views each, in
    turn. The module's ``one_moment`` is put back whatever happens."""
    snapshot = page_module.one_moment
    ways: dict[str, Callable[[psycopg.Connection[Any]], AbstractContextManager[None]]] = {
        ONE_MOMENT: snapshot,
        QUERY_BY_QUERY: query_by_query,
    }
    times: dict[str, list[float]] = {way: [] for way in ways}
    try:
        for moment in ways.values():  # a first view each, unmeasured
            page_module.one_moment = moment
            view()
        for _ in range(repeat):
            for way, moment in ways.items():
                page_module.one_moment = moment
                times[way] += view()
    finally:
        page_module.one_moment = snapshot
    return {way: statistics.median(taken) for way, taken in times.items()}
