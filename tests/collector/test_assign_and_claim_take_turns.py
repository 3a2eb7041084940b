"""``assign-meters`` and a collector claiming meters (the first gateway heard) write
``meter_gateways`` in turns, under the claim's lock: on real connections to the real database,
through the collector's real writer.

Before, :func:`collector.meter_gateways.assign` inserted the meters' gateways in the order the
operator typed them and without the lock under which :func:`collector.meter_gateways.claim` inserts
them in the order the meters were heard. Two writers inserting the same (meter, gateway) keys in
different orders wait on each other at the table's primary key: one inserted A and waited for B
(held by a third session), the other inserted C and waited for B; B let go, each came to the
other's key. A deadlock: PostgreSQL rolled one back (the operator's command failed, or the
collector's batch was tried again)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from collector import meter_gateways
from tests.collector.test_new_meters_insert_order import GATEWAY, _event, _write
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread

METERS = ["NM-A", "NM-B", "NM-C"]


def _registered_unassigned(url: str) -> None:
    """The three meters registered (meterization fitted them), assigned to no gateway yet, and the
    events' chunk there (its creation would hold a writer back at the chunk, not at a key)."""
    _write(url, events=[_event("OTHER")])
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO meters (meter_id, registered, has_readings) SELECT m, true, false FROM unnest(%s::text[]) m",
            (METERS,),
        )


def _assigning(url: str, meters: list[str]) -> Callable[[], int]:
    """``assign-meters`` of ``meters`` (in that order) to the test's gateway, committed: how many
    meters have gateways after."""

    def assign() -> int:
        with psycopg.connect(url) as conn:
            return len(meter_gateways.assign(conn, meters, [GATEWAY], "test", add=False))

    return assign


def _race(url: str, first: Callable[[], Any], second: Callable[[], Any]) -> None:
    """A third session holds NM-B's row of ``meter_gateways`` (not committed) while ``first``, then
    ``second``, come to wait; then it lets go. Both finish, without an error."""
    with psycopg.connect(url) as holder:
        holder.execute(
            "INSERT INTO meter_gateways (meter_id, gateway_id, assigned_by) VALUES ('NM-B', %s, 'x')", (GATEWAY,)
        )
        one, one_done = _in_thread(first)
        _waiting_on_rows(url, 1)
        two, two_done = _in_thread(second)
        _waiting_on_rows(url, 2)
        holder.rollback()
    one.join(60)
    two.join(60)
    assert not one.is_alive() and not two.is_alive()
    errors = [done["error"] for done in (one_done, two_done) if "error" in done]
    assert errors == []


def _assigned(url: str) -> list[tuple[str, str, object]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT meter_id, gateway_id, until FROM meter_gateways WHERE meter_id LIKE 'NM-%' ORDER BY meter_id"
        )
        return rows.fetchall()


def test_assigning_meters_while_a_collector_claims_them_does_not_deadlock(migrated_database_url: str) -> None:
    """A collector hears NM-A, NM-B and NM-C (registered, no gateway yet) and claims them for the
    gateway heard, while ``assign-meters NM-C NM-B NM-A`` assigns them to the same gateway. Before:
    the claim inserted NM-A's row and waited for NM-B's, the assignment NM-C's and waited for NM-B's;
    then each came to the other's: a deadlock. Now the assignment waits for the claim's lock."""
    url = migrated_database_url
    _registered_unassigned(url)
    _race(url, lambda: _write(url, events=[_event(m) for m in METERS]), _assigning(url, list(reversed(METERS))))
    assert _assigned(url) == [(m, GATEWAY, None) for m in METERS]
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM events WHERE meter_id LIKE 'NM-%'").fetchone()
    assert stored == (3,)  # none refused: the gateway reports each, whoever assigned it


def test_two_assignments_of_the_same_meters_in_opposite_orders_do_not_deadlock(migrated_database_url: str) -> None:
    """Two operators assign NM-A, NM-B, NM-C and NM-C, NM-B, NM-A to the same gateway at once. Before:
    one inserted NM-A's row, the other NM-C's, both waited for NM-B's, then for each other's."""
    url = migrated_database_url
    _registered_unassigned(url)
    _race(url, _assigning(url, METERS), _assigning(url, list(reversed(METERS))))
    assert _assigned(url) == [(m, GATEWAY, None) for m in METERS]
