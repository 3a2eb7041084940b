"""The demo's admin key: one a run, and the runs before it can no longer sign in.

Each ``aquami demo`` run prints a new admin key. On a database that outlives the run (``--data-dir``,
``--database-url``) the keys printed before (a terminal's scrollback, a screenshot, a CI log) went on
signing in as admin. The demo now records the id of every key it makes in :data:`DEMO_KEYS`, and
revokes them all at start-up (a killed demo never stopped cleanly) and its own when it stops. A
key's name is free text, so the table, not the name, says which keys are the demo's; a key a person
made in the demo's database is left alone.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import psycopg
from psycopg import sql

from server.auth import create_api_key, key_id_of

#: The ids of the keys the demo made, in the demo's own database (beside its mark, aquami_demo).
DEMO_KEYS = "aquami_demo_keys"
DEMO_KEY_NAME = "demo"


def issue_demo_key(conn: psycopg.Connection[Any]) -> str:
    """Revoke every key an earlier run made and make this run's: one transaction, so a run never
    finds another's key half made. A database filled by a demo from before :data:`DEMO_KEYS` has
    its keys as the demo named them (``demo``, role admin only): those are revoked once, when the
    table is made."""
    with conn.transaction():
        new_table = conn.execute("SELECT to_regclass(%s) IS NULL", (DEMO_KEYS,)).fetchone() == (True,)
        if new_table:
            conn.execute(
                sql.SQL("CREATE TABLE {} (key_id text PRIMARY KEY REFERENCES api_keys (key_id))").format(
                    sql.Identifier(DEMO_KEYS)
                )
            )
            conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND name = %s AND roles = %s",
                (DEMO_KEY_NAME, ["admin"]),
            )
        revoke_demo_keys(conn)
        key = create_api_key(conn, DEMO_KEY_NAME, ["admin"])
        conn.execute(
            sql.SQL("INSERT INTO {} (key_id) VALUES (%s)").format(sql.Identifier(DEMO_KEYS)), (key_id_of(key),)
        )
    return key


def revoke_demo_keys(conn: psycopg.Connection[Any]) -> int:
    """Revoke every key the demo made that is not revoked yet; how many."""
    if conn.execute("SELECT to_regclass(%s) IS NULL", (DEMO_KEYS,)).fetchone() == (True,):
        return 0
    revoked = conn.execute(
        sql.SQL(
            "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND key_id IN (SELECT key_id FROM {})"
        ).format(sql.Identifier(DEMO_KEYS))
    )
    return revoked.rowcount


def revoke_on_stop(database_url: str) -> None:
    """The stopping demo's key revoked, if its database still answers (the next run revokes it otherwise)."""
    with suppress(psycopg.Error), psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        revoke_demo_keys(conn)
