"""An installation recorded in error, withdrawn (``aquami server withdraw-installation``), and a file
that would record it again refused (``register-meters``) unless reinstated on purpose.

An installation is known by its meter and when it was fitted, as register-meters knows it. Its row
leaves meter_installations (its service point is free for the right meter, and the meter for its
right place) and server migration 0080's withdrawn_installations keeps it whole, with who, when and
why. The meter's reads stay stored; in the withdrawn span they count for no account until the
meter's right installation is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import class_row

from server.meters.repository import Installation
from server.withdrawal import Withdrawal, WithdrawalRefused, WithdrawnAgain, record_changes_as, said_of, shown


@dataclass(frozen=True)
class WithdrawnInstallation:
    withdrawal_id: int
    withdrawn_at: datetime
    meter_id: str
    service_point_id: str
    installed_at: datetime
    removed_at: datetime | None
    initial_register_m3: Decimal | None
    final_register_m3: Decimal | None
    reads_in_span: int  # the meter's stored reads the installation covered: now in no account's


@dataclass(frozen=True)
class Withdrawn:
    """A withdrawn installation of a meter as its page shows it: where and when the meter was said to
    be fitted, who withdrew it, when and why, and when it was reinstated (recorded again on purpose)."""

    service_point_id: str
    installed_at: datetime
    removed_at: datetime | None
    withdrawn_at: datetime
    withdrawn_by: str
    reason: str
    reinstated_at: datetime | None


def withdrawn_of_meter(conn: psycopg.Connection, meter_id: str, limit: int) -> list[Withdrawn]:
    """The meter's withdrawn installations, the latest withdrawn first, at most ``limit``."""
    with conn.cursor(row_factory=class_row(Withdrawn)) as cur:  # (the server's connections give dicts)
        return cur.execute(
            "SELECT service_point_id, installed_at, removed_at, withdrawn_at, withdrawn_by, reason, reinstated_at "
            "FROM withdrawn_installations WHERE meter_id = %s ORDER BY withdrawn_at DESC, withdrawal_id DESC LIMIT %s",
            (meter_id, limit),
        ).fetchall()


def withdraw_installation(
    conn: psycopg.Connection, meter_id: str, installed_at: datetime, withdrawal: Withdrawal
) -> WithdrawnInstallation:
    """Withdraw the meter's installation from ``installed_at``, in the caller's transaction. Raises
    WithdrawalRefused, writing nothing, when none is recorded, naming the meter's installations that
    are (the time typed another way, or another meter's)."""
    record_changes_as(conn, withdrawal)
    row = conn.execute(
        "DELETE FROM meter_installations WHERE meter_id = %s AND installed_at = %s "
        "RETURNING installation_id, service_point_id, removed_at, initial_register_m3, final_register_m3",
        (meter_id, installed_at),
    ).fetchone()
    if row is None:
        raise WithdrawalRefused(_none_recorded(conn, meter_id, installed_at))
    installation_id, point, removed_at, initial, final = row
    recorded = conn.execute(
        "INSERT INTO withdrawn_installations (installation_id, service_point_id, meter_id, installed_at, "
        "removed_at, initial_register_m3, final_register_m3, withdrawn_by, withdrawn_by_key_id, reason) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING withdrawal_id, withdrawn_at",
        (installation_id, point, meter_id, installed_at, removed_at, initial, final, *withdrawal.who_and_why()),
    ).fetchone()
    assert recorded is not None
    reads = conn.execute(
        "SELECT count(*) FROM readings WHERE meter_id = %s AND ts >= %s AND ts < coalesce(%s::timestamptz, 'infinity')",
        (meter_id, installed_at, removed_at),
    ).fetchone()
    assert reads is not None
    return WithdrawnInstallation(
        recorded[0], recorded[1], meter_id, point, installed_at, removed_at, initial, final, reads[0]
    )


def _none_recorded(conn: psycopg.Connection, meter_id: str, installed_at: datetime) -> str:
    said = f"no installation of meter {meter_id} from {shown(installed_at)} is recorded"
    known = conn.execute(
        "SELECT service_point_id, installed_at, removed_at FROM meter_installations WHERE meter_id = %s "
        "ORDER BY installed_at LIMIT 11",
        (meter_id,),
    ).fetchall()
    if not known:
        return f"{said}: the meter has none (register-meters records them)"
    listed = "; ".join(f"at {point} from {shown(since)} to {shown(until)}" for point, since, until in known[:10])
    return f"{said}; its installations: {listed}{'; …' if len(known) > 10 else ''}"


def refuse_withdrawn(
    conn: psycopg.Connection, installations: Sequence[Installation], source: str, *, reinstate: bool
) -> int:
    """Refuse (WithdrawnAgain, naming the file's row and the withdrawal) an installation of the file
    that records a withdrawn one again: the same meter, service point and installation time, withdrawn
    and not reinstated. With ``reinstate`` (the clerk means it), the withdrawals are dated reinstated
    instead, and the rows recorded as any others: how many were. A row of the same meter and time at
    another service point is the installation corrected, and recorded."""
    found = conn.execute(
        """
        SELECT w.withdrawal_id, f.row, w.meter_id, w.service_point_id, w.installed_at, w.withdrawn_at,
               w.withdrawn_by, w.reason
        FROM unnest(%s::int[], %s::text[], %s::text[], %s::timestamptz[]) AS f(row, meter_id, point, installed_at)
        JOIN withdrawn_installations w ON w.meter_id = f.meter_id AND w.installed_at = f.installed_at
         AND w.service_point_id = f.point AND w.reinstated_at IS NULL
        ORDER BY f.row, w.withdrawal_id
        """,
        (
            [i.row for i in installations],
            [i.meter_id for i in installations],
            [i.service_point_id for i in installations],
            [i.installed_at for i in installations],
        ),
    ).fetchall()
    if not found:
        return 0
    if not reinstate:
        _, row, meter_id, point, since, at, by, reason = found[0]
        where = f"row {row}: " if row else ""
        more = f" (and {len(found) - 1} more row(s) like it)" if len(found) > 1 else ""
        raise WithdrawnAgain(
            f"{source}{where}meter {meter_id} at {point} from {shown(since)} was {said_of(at, by, reason)}{more}: "
            "take the row out of the file, or give --reinstate-withdrawn to record it again"
        )
    conn.execute(
        "UPDATE withdrawn_installations SET reinstated_at = now() WHERE withdrawal_id = ANY(%s)",
        ([withdrawal_id for withdrawal_id, *_ in found],),
    )
    return len({withdrawal_id for withdrawal_id, *_ in found})
