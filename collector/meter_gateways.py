"""Which gateways may report a meter (collector migration 0066), checked once per batch.

The broker's ACL pins each gateway to its own topic (``aquami/v1/<gateway>/…``) and the parsers
hold a message's ``gateway_id`` to its topic; this holds a gateway to its own meters. A meter first
heard from a gateway is assigned to it; an operator assigns it to others, or moves it
(``aquami collector assign-meters``). A reading or meter event from a gateway its meter is not
assigned to is a dead letter (:func:`refusal` says why) naming the meter and the gateway, so that
it can be stored once the meter is assigned (:func:`replay`).

The check costs one query per batch (the batch's meters' assignments), and for meters nobody has
claimed yet one more, under a lock that makes the first gateway heard the only one (two collectors
of a shared group hearing a new meter from two gateways at once assign it once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

#: pg_advisory_xact_lock key under which unclaimed meters are claimed: "aqmg".
CLAIM_LOCK = 0x61716D67
#: How many of a meter's gateways a refusal names.
NAMED_GATEWAYS_MAX = 5

_ASSIGNED = "SELECT meter_id, gateway_id FROM meter_gateways WHERE meter_id = ANY(%s::text[])"
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
    RETURNING meter_id, gateway_id
)
SELECT meter_id, gateway_id FROM claimed
UNION ALL
SELECT meter_id, gateway_id FROM meter_gateways WHERE meter_id = ANY(%(meters)s::text[])
"""

Assignments = dict[str, set[str]]


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


def assignments(cur: psycopg.Cursor[Any], first: Mapping[str, str]) -> Assignments:
    """The gateways of every meter in ``first`` (its first gateway heard, in arrival order); a meter
    no gateway has claimed yet is claimed by its first one."""
    cur.execute(_ASSIGNED, (list(first),))
    found = _by_meter(cur.fetchall())
    unclaimed = {m: g for m, g in first.items() if m not in found}
    if unclaimed:
        found |= claim(cur, unclaimed)  # claimed by us, or by another collector first
    return found


def _by_meter(rows: Iterable[tuple[str, str]]) -> Assignments:
    found: Assignments = {}
    for meter_id, gateway_id in rows:
        found.setdefault(meter_id, set()).add(gateway_id)
    return found


def refused(meter_ids: Iterable[str], gateway_id: str, assigned: Assignments) -> list[str]:
    """The meters among ``meter_ids`` that ``gateway_id`` may not report."""
    return [m for m in meter_ids if gateway_id not in assigned.get(m, ())]


def refusal(meter_id: str, gateway_id: str, assigned: Assignments) -> str:
    """A dead letter's reason: 'meter WM-A-1 is assigned to gateway gw-a, not gw-b'."""
    gateways = sorted(assigned.get(meter_id, ()))
    if not gateways:
        return f"meter {meter_id} is assigned to no gateway, not {gateway_id}"
    named = ", ".join(gateways[:NAMED_GATEWAYS_MAX]) + (" …" if len(gateways) > NAMED_GATEWAYS_MAX else "")
    return f"meter {meter_id} is assigned to gateway{'s' if len(gateways) > 1 else ''} {named}, not {gateway_id}"


def assign(
    conn: psycopg.Connection, meter_ids: Sequence[str], gateway_ids: Sequence[str], by: str, *, add: bool
) -> Assignments:
    """Assign the meters to the gateways: to exactly these (a move), or these as well (``add``: a
    second receiver). Meters not heard yet are recorded, unregistered, as a gateway's first reading
    records them. Returns the meters' gateways after; the caller commits."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO meters (meter_id, last_gateway_id) SELECT m, %s FROM unnest(%s::text[]) m "
            "ON CONFLICT (meter_id) DO NOTHING",
            (gateway_ids[0], list(meter_ids)),
        )
        if not add:
            cur.execute(
                "DELETE FROM meter_gateways WHERE meter_id = ANY(%s::text[]) AND NOT gateway_id = ANY(%s::text[])",
                (list(meter_ids), list(gateway_ids)),
            )
        cur.execute(
            "INSERT INTO meter_gateways (meter_id, gateway_id, assigned_by) "
            "SELECT m, g, %s FROM unnest(%s::text[]) m, unnest(%s::text[]) g ON CONFLICT DO NOTHING",
            (by, list(meter_ids), list(gateway_ids)),
        )
        return current(cur, meter_ids)


def current(cur: psycopg.Cursor[Any], meter_ids: Sequence[str]) -> Assignments:
    """The meters' gateways (a meter with none is left out)."""
    cur.execute(_ASSIGNED, (list(meter_ids),))
    return _by_meter(cur.fetchall())


def meters_of(conn: psycopg.Connection, gateway_id: str) -> list[str]:
    """The meters assigned to a gateway."""
    rows = conn.execute(
        "SELECT meter_id FROM meter_gateways WHERE gateway_id = %s ORDER BY meter_id", (gateway_id,)
    ).fetchall()
    return [row[0] for row in rows]
