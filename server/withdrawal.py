"""What a withdrawal of a row recorded in error says of itself: who, why, and the refusals.

An installation or a service agreement recorded in error (a clerk's typo: the wrong service point,
the wrong meter, the wrong account) is withdrawn, not deleted: its row leaves the live table, so it
bills no one and blocks no right row as an overlap, and a record keeps what it was, who withdrew it,
when and why (server migrations 0080 and 0081). Its removal is logged by server migration 0052's
trigger as any correction's, under the withdrawer's name, so the billing periods it touched are
revised (their as_of moves) as a correction's are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

#: The longest reason a withdrawal takes, as an alert's dismissal and a reading's correction.
REASON_MAX_LENGTH = 500


class WithdrawalRefused(ValueError):
    """A withdrawal that cannot be made (no such row); the message names the row. Nothing is written."""


class WithdrawnAgain(ValueError):
    """A file that records again a row withdrawn, not reinstated on purpose; the message names the
    file's row and the withdrawal. Nothing is written."""


@dataclass(frozen=True)
class Withdrawal:
    """Who withdraws a row and why: a key's name and id where the caller has a key, else the
    person's name (``--by``)."""

    by: str
    reason: str
    by_key_id: str | None = None

    def who_and_why(self) -> tuple[str, str | None, str]:
        """The record's ``withdrawn_by``, ``withdrawn_by_key_id`` and ``reason``."""
        return self.by, self.by_key_id, self.reason


def record_changes_as(conn: psycopg.Connection, withdrawal: Withdrawal) -> None:
    """Name the withdrawer for the transaction's logged changes (server migrations 0047 and 0052:
    account_membership_changes.recorded_by and _key_id), as a key's request does (server.auth)."""
    conn.execute(
        "SELECT set_config('aquami.change_key_name', %s, true), set_config('aquami.change_key_id', %s, true)",
        (withdrawal.by, withdrawal.by_key_id or ""),
    )


def shown(moment: datetime | None) -> str:
    """An instant as the files write it (``2026-11-10T09:30:00Z``); None: ``still open``."""
    if moment is None:
        return "still open"
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def said_of(withdrawn_at: datetime, by: str, reason: str) -> str:
    """``withdrawn at 2026-12-07T08:00:00Z by Ann: “keyed on the wrong service point”``."""
    return f"withdrawn at {shown(withdrawn_at.replace(microsecond=0))} by {by}: “{reason}”"
