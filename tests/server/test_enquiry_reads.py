"""An enquiry as the API reads it: one committed state, never its status from one and its history
from another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from server.care.repository import get_enquiry


class _CommitsBetweenStatements:
    """The API's connection, with ``between`` committed on another connection right after the
    enquiry's own row was read: a trigger or a colleague landing mid-request."""

    def __init__(self, conn: psycopg.Connection[Any], between: Callable[[], None]) -> None:
        self._conn, self._between, self._done = conn, between, False

    def execute(self, query: Any, params: Any = None) -> Any:
        cursor = self._conn.execute(query, params)
        if not self._done and "FROM enquiries WHERE" in str(query):
            cursor.fetchall()  # the row is read now, before the other commit
            cursor.scroll(0, mode="absolute")
            self._done = True
            self._between()
        return cursor

    def transaction(self) -> Any:
        return self._conn.transaction()

    def __getattr__(self, name: str) -> Any:  # the rest as the connection has it (server.snapshot reads autocommit)
        return getattr(self._conn, name)


def test_an_enquiry_closed_while_it_is_read_is_read_whole_before_or_after(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as setup:
        setup.execute(
            "INSERT INTO enquiries (kind, category, source, priority, subject) "
            "VALUES ('complaint', 'billing', 'customer', 'normal', 'bill too high')"
        )
        setup.execute("INSERT INTO enquiry_updates (enquiry_id, by, note) VALUES (1, 'desk', 'opened')")

    def close_it() -> None:
        with psycopg.connect(migrated_database_url) as colleague, colleague.transaction():
            colleague.execute("UPDATE enquiries SET status = 'closed', closed_at = now() WHERE enquiry_id = 1")
            colleague.execute("INSERT INTO enquiry_updates (enquiry_id, by, note) VALUES (1, 'desk', 'closed')")

    with psycopg.connect(migrated_database_url, autocommit=True, row_factory=dict_row) as api:
        read = get_enquiry(_CommitsBetweenStatements(api, close_it), 1)  # type: ignore[arg-type]
        assert read is not None
        notes = [update["note"] for update in read["updates"]]
        assert (read["status"], notes) == ("open", ["opened"]), (read["status"], notes)
        again = get_enquiry(api, 1)  # type: ignore[arg-type]
        assert again is not None
        assert (again["status"], [u["note"] for u in again["updates"]]) == ("closed", ["opened", "closed"])
