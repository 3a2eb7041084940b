"""Whether the database the server talks to is migrated for this code, asked until it is.

Start-up asks first and refuses to start on an unmigrated database. A database that was not
reachable at start-up (a host's boot order) cannot be asked then: without asking later, the server
served it as it came back, unmigrated or left by an older release, and every keyed request was a 500
(relation "api_keys" does not exist) while /health said 200. So the first connection a request
gets asks again, and every one after it until the answer is yes; from then on nobody asks.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from collector.migrate import NOT_MIGRATED, schema_problem
from server.problems import Problem

log = logging.getLogger(__name__)


class SchemaCheck:
    """The answer, shared by the app's requests: once up to date, the database stays so for this process
    (migrations only add), and the check costs nothing more."""

    def __init__(self) -> None:
        self.passed = False
        #: what the last check found wrong; None before the first check and once one passed
        self.problem: str | None = None
        self._said: str | None = None  # the problem the log last said requests are refused for
        self._saying = threading.Lock()

    def ask(self, conn: psycopg.Connection[Any]) -> str | None:
        """What stands between this code and the database (None: nothing), asked on ``conn`` unless
        a check already passed."""
        if self.passed:
            return None
        self.problem = schema_problem(conn)
        self.passed = self.problem is None
        return self.problem

    def require(self, conn: psycopg.Connection[Any]) -> None:
        """Raise a 503 problem while the database is not migrated. Said in the log once as requests
        find it (not per request: each asks until it is migrated), and once more when it is."""
        problem = self.ask(conn)
        self._say(problem)
        if problem is not None:
            raise not_migrated(problem)

    def _say(self, problem: str | None) -> None:
        with self._saying:
            if problem == self._said:
                return
            if problem is not None:
                log.error("%s (every request is answered 503 meanwhile)", problem)
            else:
                log.warning("the database is migrated now; requests are served")
            self._said = problem


def not_migrated(detail: str) -> Problem:
    """503: the server cannot serve this database until someone migrates it, or mends what migrating
    cannot (a migration edited since, a database newer than the code); no Retry-After: waiting alone
    will not mend it."""
    title = "Database not migrated" if detail == NOT_MIGRATED else "Database does not match this aquami"
    return Problem(503, detail, title=title)
