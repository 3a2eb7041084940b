"""Plan-based tests (no timing): which queries a request ran, and what their plans did."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A plan node of ``EXPLAIN (FORMAT JSON)`` and every node below it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explained_nodes(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[dict[str, Any]]:
    """Every node of ``query``'s plan as run (``EXPLAIN (ANALYZE, FORMAT JSON)``), top first."""
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    (explained,) = row.values() if isinstance(row, dict) else row
    plan = explained if isinstance(explained, list) else json.loads(explained)
    return list(plan_nodes(plan[0]["Plan"]))


@contextmanager
def queries_run(matches: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    """The queries (text, parameters) any connection runs inside the block whose text ``matches``."""
    recorded: list[tuple[str, Any]] = []
    execute = psycopg.Connection.execute

    def recording(self: psycopg.Connection[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else query.as_string(self)
        if matches(text):
            recorded.append((text, params))
        return execute(self, query, params, **kwargs)

    setattr(psycopg.Connection, "execute", recording)  # noqa: B010 (mypy: a method is not assignable)
    try:
        yield recorded
    finally:
        setattr(psycopg.Connection, "execute", execute)  # noqa: B010


@contextmanager
def statements_run() -> Iterator[list[tuple[str, Any]]]:
    """Every statement (text, parameters) any cursor runs inside the block, a connection's ``execute``
    (which runs its cursor's) and a cursor's own alike: :func:`queries_run` sees the first only."""
    recorded: list[tuple[str, Any]] = []
    execute = psycopg.Cursor.execute

    def recording(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        recorded.append((query if isinstance(query, str) else query.as_string(self), params))
        return execute(self, query, params, **kwargs)

    setattr(psycopg.Cursor, "execute", recording)  # noqa: B010 (mypy: a method is not assignable)
    try:
        yield recorded
    finally:
        setattr(psycopg.Cursor, "execute", execute)  # noqa: B010


@contextmanager
def after_statement(conn: psycopg.Connection[Any], n: int, then: Callable[[], None]) -> Iterator[list[int]]:
    """``then()`` run once the ``n``-th statement ``conn`` runs inside the block has its answer; yields
    the statements' count so far."""
    execute = psycopg.Cursor.execute
    run = [0]

    def counting(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        result = execute(self, query, params, **kwargs)
        if self.connection is conn:
            run[0] += 1
            if run[0] == n:
                then()
        return result

    setattr(psycopg.Cursor, "execute", counting)  # noqa: B010 (mypy: a method is not assignable)
    try:
        yield run
    finally:
        setattr(psycopg.Cursor, "execute", execute)  # noqa: B010
