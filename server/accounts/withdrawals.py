"""A service agreement recorded in error, withdrawn (``aquami server withdraw-agreement``), and a file
that would record it again refused (``register-accounts``) unless reinstated on purpose.

An agreement is known by its service point and start, as register-accounts knows it. Its row leaves
service_agreements (the service point's period is free for the right account) and server migration
0081's withdrawn_agreements keeps it whole, with who, when and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from server.accounts.register import Agreement
from server.withdrawal import Withdrawal, WithdrawalRefused, WithdrawnAgain, record_changes_as, said_of, shown


@dataclass(frozen=True)
class WithdrawnAgreement:
    withdrawal_id: int
    withdrawn_at: datetime
    account_id: str
    service_point_id: str
    start_at: datetime
    end_at: datetime | None


def withdraw_agreement(
    conn: psycopg.Connection, service_point_id: str, start_at: datetime, withdrawal: Withdrawal
) -> WithdrawnAgreement:
    """Withdraw the agreement on ``service_point_id`` from ``start_at``, in the caller's transaction.
    Raises WithdrawalRefused, writing nothing, when none is recorded, naming the service point's
    agreements that are."""
    record_changes_as(conn, withdrawal)
    row = conn.execute(
        "DELETE FROM service_agreements WHERE service_point_id = %s AND start_at = %s "
        "RETURNING agreement_id, account_id, end_at",
        (service_point_id, start_at),
    ).fetchone()
    if row is None:
        raise WithdrawalRefused(_none_recorded(conn, service_point_id, start_at))
    agreement_id, account_id, end_at = row
    recorded = conn.execute(
        "INSERT INTO withdrawn_agreements (agreement_id, account_id, service_point_id, start_at, end_at, "
        "withdrawn_by, withdrawn_by_key_id, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "RETURNING withdrawal_id, withdrawn_at",
        (agreement_id, account_id, service_point_id, start_at, end_at, *withdrawal.who_and_why()),
    ).fetchone()
    assert recorded is not None
    return WithdrawnAgreement(recorded[0], recorded[1], account_id, service_point_id, start_at, end_at)


def _none_recorded(conn: psycopg.Connection, service_point_id: str, start_at: datetime) -> str:
    said = f"no agreement on service point {service_point_id} from {shown(start_at)} is recorded"
    known = conn.execute(
        "SELECT account_id, start_at, end_at FROM service_agreements WHERE service_point_id = %s "
        "ORDER BY start_at LIMIT 11",
        (service_point_id,),
    ).fetchall()
    if not known:
        return f"{said}: the service point has none (register-accounts records them)"
    listed = "; ".join(f"account {account} from {shown(start)} to {shown(end)}" for account, start, end in known[:10])
    return f"{said}; its agreements: {listed}{'; …' if len(known) > 10 else ''}"


def refuse_withdrawn(conn: psycopg.Connection, agreements: Sequence[Agreement], source: str, *, reinstate: bool) -> int:
    """Refuse (WithdrawnAgain, naming the file's row and the withdrawal) an agreement of the file that
    records a withdrawn one again: the same account, service point and start, withdrawn and not
    reinstated. With ``reinstate`` (the clerk means it), the withdrawals are dated reinstated instead
    and the rows recorded as any others: how many were. A row of the same service point and start for
    another account is the agreement corrected, and recorded."""
    found = conn.execute(
        """
        SELECT w.withdrawal_id, f.line, w.account_id, w.service_point_id, w.start_at, w.withdrawn_at,
               w.withdrawn_by, w.reason
        FROM unnest(%s::int[], %s::text[], %s::text[], %s::timestamptz[]) AS f(line, account_id, point, start_at)
        JOIN withdrawn_agreements w ON w.account_id = f.account_id AND w.service_point_id = f.point
         AND w.start_at = f.start_at AND w.reinstated_at IS NULL
        ORDER BY f.line, w.withdrawal_id
        """,
        (
            [a.line for a in agreements],
            [a.account_id for a in agreements],
            [a.service_point_id for a in agreements],
            [a.start_at for a in agreements],
        ),
    ).fetchall()
    if not found:
        return 0
    if not reinstate:
        _, line, account_id, point, start, at, by, reason = found[0]
        where = f"row {line}: " if line else ""
        more = f" (and {len(found) - 1} more row(s) like it)" if len(found) > 1 else ""
        raise WithdrawnAgain(
            f"{source}{where}account {account_id}'s agreement on {point} from {shown(start)} was "
            f"{said_of(at, by, reason)}{more}: take the row out of the file, or give --reinstate-withdrawn "
            "to record it again"
        )
    conn.execute(
        "UPDATE withdrawn_agreements SET reinstated_at = now() WHERE withdrawal_id = ANY(%s)",
        ([withdrawal_id for withdrawal_id, *_ in found],),
    )
    return len({withdrawal_id for withdrawal_id, *_ in found})
