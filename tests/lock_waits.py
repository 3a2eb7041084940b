"""The lock waits of a test's own database, for the tests that wait until a session comes to wait.

``pg_locks`` and ``pg_stat_activity`` show every database of the server, and CI runs the tests in two
workers (``-n 2``), each with databases of its own on one server: a helper that counted the waits of
the whole server returned as soon as the other worker's test waited for a lock, before its own
session had come to wait, and the test went on to let go or to look too early (a flaky pass or
failure). These look at the sessions of the connection's own database only.
"""

from __future__ import annotations

import psycopg

#: The locks not granted to sessions of this database: pid, lock type, and an advisory lock's two keys
#: (``classid``, ``objid``; NULL for other types).
_WAITS = """
SELECT l.pid, l.locktype, l.classid::bigint, l.objid::bigint
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE NOT l.granted AND a.datname = current_database()
ORDER BY l.pid
"""


def lock_waits(monitor: psycopg.Connection) -> list[tuple[int, str, int | None, int | None]]:
    """The locks sessions of ``monitor``'s database wait for: (pid, locktype, classid, objid)."""
    with monitor.cursor() as cur:
        return [(pid, locktype, classid, objid) for pid, locktype, classid, objid in cur.execute(_WAITS)]


def waiting_for_advisory(monitor: psycopg.Connection, key: int) -> list[int]:
    """The pids of this database's sessions waiting for the one-key advisory lock ``key``
    (``pg_advisory_lock(key)``: ``classid`` 0 for a key below 2³², ``objid`` its low 32 bits)."""
    return [
        pid
        for pid, locktype, classid, objid in lock_waits(monitor)
        if locktype == "advisory" and classid == key >> 32 and objid == key & 0xFFFFFFFF
    ]


#: What the sessions named ``application_name`` of this database wait for, and, for each session holding
#: them up (``pg_blocking_pids``), what it is doing, what it waits for itself, if anything, and which
#: sessions hold that up (their pid and query).
_CHAIN = r"""
SELECT l.locktype, l.classid::bigint, l.objid::bigint, l.mode, b.pid, b.application_name,
       left(regexp_replace(b.query, '\s+', ' ', 'g'), 80),
       (SELECT string_agg(format('%%s (%%s, %%s) %%s', w.locktype, w.classid, w.objid, w.mode), '; ')
        FROM pg_locks w WHERE w.pid = b.pid AND NOT w.granted),
       (SELECT string_agg(format('pid %%s (%%s)', c.pid, left(regexp_replace(c.query, '\s+', ' ', 'g'), 80)), '; ')
        FROM pg_stat_activity c WHERE c.pid = ANY (pg_blocking_pids(b.pid)))
FROM pg_stat_activity a
JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
LEFT JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid) ON true
LEFT JOIN pg_stat_activity b ON b.pid = blocker.pid
WHERE a.datname = current_database() AND a.application_name = %s
"""


def waits_of(monitor: psycopg.Connection, application_name: str) -> list[str]:
    """What the sessions of ``monitor``'s database named ``application_name`` wait for, one line per
    session holding them up: the lock, and the blocker's pid, name and query, and what it waits for
    itself, held up by whom (a chain of waits, said in a failing test's message). Empty: they wait
    for nothing."""
    with monitor.cursor() as cur:
        return [
            f"{locktype} ({classid}, {objid}) {mode}, held up by pid {pid} ({name or 'unnamed'}: {query!r}"
            + (f", itself waiting for {waiting}, held up by {behind})" if waiting else ")")
            for locktype, classid, objid, mode, pid, name, query, waiting, behind in cur.execute(
                _CHAIN, (application_name,)
            )
        ]
