"""Where a meter is fitted now and whose account it serves (server migration 0010's installations and
service agreements, as meterization and the customer system record them): what a care agent checks
with a caller before talking about their water. A meter's page shows it; the account holder's name and
the premises' address are personal data, shown to the keys that see contacts (server.care.router.
SEES_CONTACTS), the ids to every key that reads meters, as enquiries show them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import class_row, tuple_row


@dataclass(frozen=True, slots=True)
class Fitted:
    """The meter's installation now, and the agreement on its service point now (None: vacant)."""

    service_point_id: str
    address: str | None
    premise_type: str
    installed_at: datetime
    initial_register_m3: Decimal | None  # the installation job card's register (None: not read on it)
    account_id: str | None
    account_name: str | None
    account_since: datetime | None


def fitted_now(conn: psycopg.Connection, meter_id: str) -> Fitted | None:
    """The meter's installation at the database's ``now()`` and the account on its service point
    then; None when it is fitted nowhere now (never recorded, or removed)."""
    with conn.cursor(row_factory=class_row(Fitted)) as cur:
        return cur.execute(
            """
            SELECT i.service_point_id, sp.address, sp.premise_type, i.installed_at, i.initial_register_m3,
                   ag.account_id, a.name AS account_name, ag.start_at AS account_since
            FROM meter_installations i
            JOIN service_points sp ON sp.service_point_id = i.service_point_id
            LEFT JOIN service_agreements ag ON ag.service_point_id = i.service_point_id
                AND ag.start_at <= now() AND (ag.end_at IS NULL OR ag.end_at > now())
            LEFT JOIN accounts a ON a.account_id = ag.account_id
            WHERE i.meter_id = %s AND i.installed_at <= now() AND (i.removed_at IS NULL OR i.removed_at > now())
            ORDER BY i.installed_at DESC, ag.start_at DESC
            LIMIT 1
            """,
            (meter_id,),
        ).fetchone()


@dataclass(frozen=True, slots=True)
class Removed:
    """Where a meter fitted nowhere now was last taken out, with its removal job card's register."""

    service_point_id: str
    removed_at: datetime
    final_register_m3: Decimal | None  # None: not read on the card


def last_removal(conn: psycopg.Connection, meter_id: str) -> Removed | None:
    """The meter's latest installation removed by the database's ``now()``; None when it has none
    (never fitted). A meter's page shows it for a meter fitted nowhere now: "never fitted, or removed"
    left a clerk to guess which, and where the billing of an exchange closes (the removal card)."""
    with conn.cursor(row_factory=class_row(Removed)) as cur:
        return cur.execute(
            "SELECT service_point_id, removed_at, final_register_m3 FROM meter_installations "
            "WHERE meter_id = %s AND removed_at <= now() ORDER BY removed_at DESC LIMIT 1",
            (meter_id,),
        ).fetchone()


def meters_of_account_now(conn: psycopg.Connection, account_id: str) -> list[tuple[str, str, str, str | None]]:
    """The meters fitted now at the service points held now by the account so numbered, in any case
    ("acc-7" finds ACC-7, as the meter search finds "wm-317"): (account as stored, meter id, service
    point, district), by account then meter id; none for an account that holds none (or no such
    account). Accounts are stored as the customer system writes them and compared exactly everywhere
    else (billing, the enquiries' filter), so two whose numbers differ only in case are two accounts:
    both are listed, each under its own number."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(METERS_OF_ACCOUNT_NOW, (account_id,)).fetchall()


#: :func:`meters_of_account_now`'s query: the account's number compared in lower case, which server
#: migration 0064's index on ``lower(account_id)`` serves (0010's, on the number as written, cannot).
METERS_OF_ACCOUNT_NOW = """
SELECT ag.account_id, i.meter_id, i.service_point_id, m.dma
FROM service_agreements ag
JOIN meter_installations i ON i.service_point_id = ag.service_point_id
    AND i.installed_at <= now() AND (i.removed_at IS NULL OR i.removed_at > now())
JOIN meters m ON m.meter_id = i.meter_id
WHERE lower(ag.account_id) = lower(%s) AND ag.start_at <= now() AND (ag.end_at IS NULL OR ag.end_at > now())
ORDER BY ag.account_id, i.meter_id
"""
