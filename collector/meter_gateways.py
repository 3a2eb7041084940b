"""Which gateways may report a meter (collector migration 0066), checked once per batch.

The broker's ACL pins each gateway to its own topic (``aquami/v1/<gateway>/…``) and the parsers
hold a message's ``gateway_id`` to its topic; this holds a gateway to its own meters. A meter first
heard from a gateway is assigned to it; an operator assigns it to others, or moves it
(``aquami collector assign-meters``). A reading or meter event from a gateway its meter is not
assigned to is a dead letter (:func:`refusal` says why) naming the meter and the gateway, so that
it can be stored once the meter is assigned (:func:`replay`).

A move keeps the gateways the meter leaves as its past ones, each with the moment of the move
(``until``, collector migration 0071): what they still hold in their spools, measured before the
move, is stored as it arrives within :data:`HANDOVER` of the move, and what they measured after it
is refused. Before, the move refused it all.

The check costs one query per batch (the batch's meters' assignments), and for meters nobody has
claimed yet one more, under a lock that makes the first gateway heard the only one (two collectors
of a shared group hearing a new meter from two gateways at once assign it once). An operator's
assignment takes the same lock, after recording the meters as the collector does: the writers of
``meter_gateways`` take turns, and cannot wait on each other's rows in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

#: pg_advisory_xact_lock key under which unclaimed meters are claimed, and meters assigned
#: (:func:`assign`), so that writers of ``meter_gateways`` take turns: "aqmg".
CLAIM_LOCK = 0x61716D67
#: How many of a meter's gateways a refusal names.
NAMED_GATEWAYS_MAX = 5

#: How long after a move the meter's old gateway may still deliver what it measured before it: its
#: spool holds readings while the broker is away, and a gateway can be away for days.
HANDOVER = timedelta(days=35)

_ASSIGNED = "SELECT meter_id, gateway_id, until FROM meter_gateways WHERE meter_id = ANY(%s::text[])"
# Claims, and the meters' gateways after: those claimed here (RETURNING: the statement's own
# snapshot does not see them) and those claimed before, by another collector too (its claim was
# committed before the lock was ours, so before this statement's snapshot).
_CLAIM = """
WITH claimed AS (
    INSERT INTO meter_gateways (meter_id, gateway_id, assigned_by)
    SELECT c.meter_id, c.gateway_id, 'ingest'
    FROM unnest(%(meters)s::text[], %(gateways)s::text[]) AS c(meter_id, gateway_id)
    WHERE NOT EXISTS (SELECT 1 FROM meter_gateways g WHERE g.meter_id = c.meter_id)
    ON CONFLICT DO NOTHING
    RETURNING meter_id, gateway_id, until
)
SELECT meter_id, gateway_id, until FROM claimed
UNION ALL
SELECT meter_id, gateway_id, until FROM meter_gateways WHERE meter_id = ANY(%(meters)s::text[])
"""

#: Each meter's gateways: None for those that report it now, the moment of the move for those it left.
Assignments = dict[str, dict[str, datetime | None]]


def first_heard(pairs: Iterable[tuple[Iterable[str], str]]) -> dict[str, str]:
    """Each meter's first gateway, from (meter ids, gateway) in arrival order."""
    first: dict[str, str] = {}
    for meter_ids, gateway in pairs:
        for meter_id in meter_ids:
            first.setdefault(meter_id, gateway)
    return first


def claim(cur: psycopg.Cursor[Any], first: Mapping[str, str]) -> Assignments:
    """Assign each meter that has no gateway to the gateway it was first heard from; the meters'
    gateways after. The meters must be in ``meters`` already."""
    if not first:
        return {}
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))  # held to commit: claims take turns
    cur.execute(_CLAIM, {"meters": list(first), "gateways": list(first.values())})
    return _by_meter(cur.fetchall())


def _by_meter(rows: Iterable[tuple[str, str, datetime | None]]) -> Assignments:
    found: Assignments = {}
    for meter_id, gateway_id, until in rows:
        found.setdefault(meter_id, {})[gateway_id] = until
    return found


def reports(assigned: Assignments, meter_id: str, gateway_id: str) -> bool:
    """Whether the gateway reports the meter now (not only what it measured before a move)."""
    gateways = assigned.get(meter_id, {})
    return gateway_id in gateways and gateways[gateway_id] is None


def handed_over(assigned: Assignments, meter_id: str, gateway_id: str, now: datetime) -> datetime | None:
    """The moment the meter moved away from the gateway, while its readings from before it are
    still taken (within :data:`HANDOVER`); else None."""
    until = assigned.get(meter_id, {}).get(gateway_id)
    return until if until is not None and now < until + HANDOVER else None


def refused(meter_ids: Iterable[str], gateway_id: str, assigned: Assignments) -> list[str]:
    """The meters among ``meter_ids`` that ``gateway_id`` does not report now (some of their
    readings may still be taken: :func:`handed_over`)."""
    return [m for m in meter_ids if not reports(assigned, m, gateway_id)]


def refusal(meter_id: str, gateway_id: str, assigned: Assignments) -> str:
    """A dead letter's reason: 'meter WM-A-1 is assigned to gateway gw-a, not gw-b', or for a gateway
    the meter moved away from, '…, not gw-b (since 2026-03-01T12:00:00Z)'."""
    gateways = sorted(g for g, until in assigned.get(meter_id, {}).items() if until is None)
    until = assigned.get(meter_id, {}).get(gateway_id)
    since = f" (since {until.astimezone(UTC).isoformat().replace('+00:00', 'Z')})" if until is not None else ""
    if meter_id not in assigned:  # never assigned: refused by a collector that claims none
        return (
            f"meter {meter_id} is assigned to no gateway and this collector stores only meters assigned ahead "
            f"(--assigned-meters-only): if {gateway_id} is its gateway, "
            f"aquami collector assign-meters {meter_id} --gateway {gateway_id} --replay stores this"
        )
    if not gateways:
        return f"meter {meter_id} is assigned to no gateway, not {gateway_id}{since}"
    named = ", ".join(gateways[:NAMED_GATEWAYS_MAX]) + (" …" if len(gateways) > NAMED_GATEWAYS_MAX else "")
    return f"meter {meter_id} is assigned to gateway{'s' if len(gateways) > 1 else ''} {named}, not {gateway_id}{since}"


def assign(
    conn: psycopg.Connection, meter_ids: Sequence[str], gateway_ids: Sequence[str], by: str, *, add: bool
) -> Assignments:
    """Assign the meters to the gateways: to exactly these (a move), or these as well (``add``: a
    second receiver). Meters not heard yet are recorded, unregistered, as a gateway's first reading
    records them. Waits for a collector claiming meters (:data:`CLAIM_LOCK`, held to its commit).
    Returns the meters' gateways after; the caller commits."""
    with conn.cursor() as cur:
        cur.execute(
            # (no reading yet: has_readings false, as register-meters records one, collector migration 0067)
            # in the collector's order, byte by byte (collector.store._REGISTER_METERS): in the order
            # given, it deadlocked with a collector registering the same new meters
            "INSERT INTO meters (meter_id, last_gateway_id, has_readings) "
            "SELECT m, %s, false FROM unnest(%s::text[]) m "
            'ORDER BY m COLLATE "C" '
            "ON CONFLICT (meter_id) DO NOTHING",
            (gateway_ids[0], list(meter_ids)),
        )
        # the meters' gateways are written under the claims' lock, taken after the meters as a
        # collector takes it: without it, this and a claim (or another assign) inserting the same
        # meters' rows in other orders deadlocked at meter_gateways' primary key
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
        if not add:  # the gateways left keep what they measured before the move (HANDOVER)
            cur.execute(
                "UPDATE meter_gateways SET until = now() "
                "WHERE meter_id = ANY(%s::text[]) AND NOT gateway_id = ANY(%s::text[]) AND until IS NULL",
                (list(meter_ids), list(gateway_ids)),
            )
        cur.execute(
            "INSERT INTO meter_gateways (meter_id, gateway_id, assigned_by) "
            "SELECT m, g, %s FROM unnest(%s::text[]) m, unnest(%s::text[]) g "
            "ON CONFLICT (meter_id, gateway_id) DO UPDATE "  # a gateway left before, assigned again
            "SET until = NULL, since = now(), assigned_by = excluded.assigned_by "
            "WHERE meter_gateways.until IS NOT NULL",
            (by, list(meter_ids), list(gateway_ids)),
        )
        return current(cur, meter_ids)


def unknown(conn: psycopg.Connection, meter_ids: Sequence[str]) -> list[str]:
    """The meters among ``meter_ids`` that meterization has not registered (register-meters) and no
    gateway has delivered a reading of: a typo as likely as a meter assigned ahead of its fitting."""
    rows = conn.execute(
        "SELECT m FROM unnest(%s::text[]) WITH ORDINALITY AS given(m, n) "
        "WHERE NOT EXISTS (SELECT 1 FROM meters WHERE meter_id = m AND registered) "
        "AND NOT EXISTS (SELECT 1 FROM readings WHERE meter_id = m) ORDER BY n",
        (list(meter_ids),),
    ).fetchall()
    return [row[0] for row in rows]


def current(cur: psycopg.Cursor[Any], meter_ids: Sequence[str]) -> Assignments:
    """The meters' gateways, those it moved away from with the moment (a meter with none is left out)."""
    cur.execute(_ASSIGNED, (list(meter_ids),))
    return _by_meter(cur.fetchall())


def meters_of(conn: psycopg.Connection, gateway_id: str) -> list[str]:
    """The meters assigned to a gateway."""
    rows = conn.execute(
        "SELECT meter_id FROM meter_gateways WHERE gateway_id = %s AND until IS NULL ORDER BY meter_id", (gateway_id,)
    ).fetchall()
    return [row[0] for row in rows]
