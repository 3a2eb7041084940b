"""Work the collector repeats on a schedule (detection, VEE), each in its own thread.

Nothing that goes wrong in one run stops the schedule: a database away (restarting, unreachable,
a standby after a failover) is tried again at the next run, and so is a fault in the work itself,
logged with its traceback. A schedule that died on it would have left the utility without
detection or without validated reads, and said so only once, in a log; a fault raised into the
collector's main loop would have stopped ingest too.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from datetime import timedelta

import psycopg

from aquami.outage import one_line

log = logging.getLogger(__name__)


class PeriodicJob(ABC):
    """Runs :meth:`work` in a daemon thread ``first_after`` after start (at once by default), then
    every ``every``, until stopped."""

    #: The thread's name, and what the log calls a run.
    name = "job"

    def __init__(self, every: timedelta, first_after: timedelta = timedelta(0)) -> None:
        if every <= timedelta(0):
            raise ValueError(f"{self.name}: every must be positive, not {every}")
        self.every, self.first_after = every, first_after
        self.runs = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    @abstractmethod
    def work(self) -> None:
        """One run; raises when it fails."""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the run under way, waiting up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def run_once(self) -> bool:
        """One run now; False if it failed (counted in ``failures`` and logged)."""
        try:
            self.work()
        except psycopg.Error as error:
            self.failures += 1
            log.warning("%s run failed (%s); next try in %s", self.name, said(error), self.every)
            return False
        except Exception:
            self.failures += 1
            log.exception("%s run failed; next try in %s", self.name, self.every)
            return False
        self.runs += 1
        return True

    def _loop(self) -> None:
        if self._stop.wait(self.first_after.total_seconds()):
            return
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every.total_seconds())


def said(error: psycopg.Error) -> str:
    """A database error on one line: the server's message with its detail and hint, without the
    context psycopg adds on a line of its own (a PL/pgSQL function's ``CONTEXT:`` made
    open_transactions_floor()'s refusal two lines, the grant it names ending the first), or the
    client's message (a connection that failed) with its lines joined."""
    diag = error.diag
    if diag.message_primary is None:
        return one_line(error)
    return "; ".join(one_line(part) for part in (diag.message_primary, diag.message_detail, diag.message_hint) if part)
