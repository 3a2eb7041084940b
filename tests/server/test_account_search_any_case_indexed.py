"""The care desk's search by account number in any case (server.care.fitted.meters_of_account_now)
reads the agreements of that number through an index (server migration 0064), not every agreement:
before, ``lower(account_id) = lower(typed)`` could use no index, and the 20,000 agreements here were
read in a sequential scan for each search."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from server.care.fitted import METERS_OF_ACCOUNT_NOW, meters_of_account_now
from tests.query_plans import explained_nodes

AGREEMENTS = 20_000


def fill(conn: psycopg.Connection[Any]) -> None:
    """20,000 accounts ACC-0 … each holding one service point with a meter fitted, and acc-7 (lower
    case: another account to the customer system) holding one too."""
    conn.execute(
        """
        INSERT INTO meters (meter_id, dma, role) SELECT 'M' || i, 'D1', 'customer' FROM generate_series(0, %(n)s) i;
        INSERT INTO accounts (account_id, name)
            SELECT CASE WHEN i = %(n)s THEN 'acc-7' ELSE 'ACC-' || i END, 'N' FROM generate_series(0, %(n)s) i;
        INSERT INTO service_points (service_point_id) SELECT 'SP-' || i FROM generate_series(0, %(n)s) i;
        INSERT INTO service_agreements (account_id, service_point_id, start_at)
            SELECT CASE WHEN i = %(n)s THEN 'acc-7' ELSE 'ACC-' || i END, 'SP-' || i, '2025-01-01Z'
            FROM generate_series(0, %(n)s) i;
        INSERT INTO meter_installations (service_point_id, meter_id, installed_at)
            SELECT 'SP-' || i, 'M' || i, '2025-01-01Z' FROM generate_series(0, %(n)s) i;
        """.replace("%(n)s", str(AGREEMENTS - 1))
    )
    conn.execute("ANALYZE service_agreements")


@pytest.mark.parametrize("typed", ["acc-7", "ACC-7", "Acc-7"])
def test_the_account_search_in_any_case_reads_the_agreements_through_an_index(
    migrated_database_url: str, typed: str
) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        fill(conn)
        found = meters_of_account_now(conn, typed)
        assert found == [("ACC-7", "M7", "SP-7", "D1"), ("acc-7", f"M{AGREEMENTS - 1}", f"SP-{AGREEMENTS - 1}", "D1")]
        nodes = explained_nodes(conn, METERS_OF_ACCOUNT_NOW, (typed,))
    agreements = [node for node in nodes if node.get("Relation Name") == "service_agreements"]
    assert agreements, nodes
    for node in agreements:  # read through the index on the number in lower case, not scanned whole
        assert node["Node Type"] in ("Index Scan", "Bitmap Heap Scan", "Index Only Scan"), node
    used = [node.get("Index Name") for node in nodes if "Index Name" in node]
    assert "service_agreements_account_any_case_idx" in used, nodes
    assert sum(node.get("Actual Rows", 0) for node in agreements) == 2, agreements
