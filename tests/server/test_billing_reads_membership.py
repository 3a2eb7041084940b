"""A billing system's copy of an account's reads, kept with ``changed_since``, stays the database's
when a job card or an agreement is recorded late (server migration 0052).

Before, a meter exchange entered the day after it was done, or a move-out dated back, moved reads
into or out of the account without writing a read: ``changed_since`` gave nothing, and the copy kept
the old meter's reads after the exchange, lacked the new meter's, and kept the reads of a customer
who had moved out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.store import SAY_WHO, ReadingStore
from server.accounts.register import Agreement, record_accounts
from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import Installation, record_installations
from tests.server.test_billing_vee_issues import _setup

FITTED = datetime(2026, 10, 1, tzinfo=UTC)
START = datetime(2026, 11, 1, tzinfo=UTC)
SWAP = START + timedelta(hours=12)  # the exchange (and the move-out) happened here
PULL = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}
Key = tuple[str, str]


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """Account A-M at SP-M with meter M, read hourly all day; meter N, fitted at SP-M at 12:00 in
    exchange for M, read from then on (the gateway hears a meter before its job card is entered)."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(FITTED, None)])
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('N', true)")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-Q', 'the next tenant')")
    store = ReadingStore(url)
    rows = [("M", START + timedelta(hours=h), Decimal("100.000") + Decimal("0.010") * h) for h in range(24)]
    rows += [("N", SWAP + timedelta(hours=h), Decimal("0.005") * h) for h in range(12)]
    store.write([(m, t.isoformat(), str(v), None, None, [], "gw1", i + 1) for i, (m, t, v) in enumerate(rows)])
    store.close()
    with TestClient(create_app(url)) as client:
        yield client, {"Authorization": f"Bearer {key}"}, url


def _pull(client: TestClient, headers: dict[str, str], account: str, **params: Any) -> tuple[list, list, str]:
    """Every page of a pull: its items, its removed keys and its next_changed_since."""
    page = client.get("/billing/reads", params={**PULL, "account": account, **params}, headers=headers).json()
    items, removed, since = page["items"], page["removed"], page["next_changed_since"]
    while page["next"]:
        page = client.get(page["next"], headers=headers).json()
        items, removed = items + page["items"], removed + page["removed"]
    return items, removed, since


def _copy(items: list[dict]) -> dict[Key, dict]:
    return {(i["ts"], i["meter_id"]): i for i in items}


def _apply(copy: dict[Key, dict], items: list[dict], removed: list[dict]) -> None:
    """As README asks of a billing system: upsert the items, delete the removed keys it holds."""
    copy.update(_copy(items))
    for r in removed:
        copy.pop((r["ts"], r["meter_id"]), None)


def _meters_by_hour(copy: dict[Key, dict]) -> dict[str, str]:
    return {ts[11:16]: meter for ts, meter in sorted(copy)}


def test_a_meter_exchange_recorded_late_reaches_the_copy(api: Any) -> None:
    client, headers, url = api
    items, _, since = _pull(client, headers, "A-M", limit=7)
    copy = _copy(items)
    assert set(_meters_by_hour(copy).values()) == {"M"} and len(copy) == 24
    with psycopg.connect(url) as conn:  # the job card of the exchange, entered the next day
        record_installations(
            conn,
            [Installation("M", "SP-M", None, FITTED, SWAP), Installation("N", "SP-M", None, SWAP)],
            given=("removed_at",),
        )
    items, removed, _ = _pull(client, headers, "A-M", changed_since=since, limit=5)
    assert {i["meter_id"] for i in items} == {"N"} and len(items) == 12
    assert {r["meter_id"] for r in removed} == {"M"} and len(removed) == 12
    assert {r["removed_reason"] for r in removed} == {
        "no longer counts for the account: an agreement or installation recorded since"
    }
    _apply(copy, items, removed)
    assert copy == _copy(_pull(client, headers, "A-M")[0])
    assert _meters_by_hour(copy) == {f"{h:02d}:00": "M" if h < 12 else "N" for h in range(24)}


def test_a_move_out_and_in_recorded_late_reach_both_accounts_copies(api: Any) -> None:
    client, headers, url = api
    with psycopg.connect(url) as conn:  # (the exchange on time, to have one meter here all day)
        record_installations(conn, [Installation("M", "SP-M", None, FITTED)], given=("removed_at",))
    out_items, _, out_since = _pull(client, headers, "A-M")
    in_items, _, in_since = _pull(client, headers, "A-Q")
    old_tenant, new_tenant = _copy(out_items), _copy(in_items)
    assert len(old_tenant) == 24 and new_tenant == {}
    with psycopg.connect(url) as conn:  # the move-out at 12:00 and the move-in, entered a day late
        record_accounts(
            conn,
            [
                Agreement("A-M", "x", "SP-M", datetime(2025, 1, 1, tzinfo=UTC), SWAP, None),
                Agreement("A-Q", "the next tenant", "SP-M", SWAP, None, None),
            ],
        )
    for copy, account, since in ((old_tenant, "A-M", out_since), (new_tenant, "A-Q", in_since)):
        items, removed, _ = _pull(client, headers, account, changed_since=since, limit=5)
        _apply(copy, items, removed)
        assert copy == _copy(_pull(client, headers, account)[0]), account
    assert sorted(ts[11:16] for ts, _ in old_tenant) == [f"{h:02d}:00" for h in range(12)]
    assert sorted(ts[11:16] for ts, _ in new_tenant) == [f"{h:02d}:00" for h in range(12, 24)]


def test_only_the_span_a_record_changed_is_logged_and_a_record_made_again_logs_nothing(
    migrated_database_url: str,
) -> None:
    """A move-out logs from its end on, not the agreement's whole history; a file recorded again
    unchanged (every row updated to what it was) logs nothing; a deleted installation logs its span."""
    with psycopg.connect(migrated_database_url) as conn:
        _setup(conn, "M", [(FITTED, None)])
        logged = "SELECT account_id, meter_id, from_ts, to_ts = 'infinity' FROM account_membership_changes"
        assert conn.execute(logged).fetchall() == [("A-M", "M", FITTED, True)]  # fitted: from then on
        conn.execute("DELETE FROM account_membership_changes")
        record_installations(conn, [Installation("M", "SP-M", None, FITTED)], given=("removed_at",))
        agreement = Agreement("A-M", "x", "SP-M", datetime(2025, 1, 1, tzinfo=UTC), None, None)
        record_accounts(conn, [agreement])
        assert conn.execute("SELECT count(*) FROM account_membership_changes").fetchone() == (0,)
        record_accounts(conn, [Agreement("A-M", "x", "SP-M", datetime(2025, 1, 1, tzinfo=UTC), SWAP, None)])
        assert conn.execute(logged).fetchall() == [("A-M", "M", SWAP, True)]  # the move-out: from it on
        conn.execute("DELETE FROM account_membership_changes")
        conn.execute("DELETE FROM meter_installations")  # an installation recorded in error, taken back
        assert conn.execute(logged).fetchall() == [("A-M", "M", FITTED, False)]  # until the move-out


def test_a_read_deleted_and_moved_out_since_is_removed_from_the_copy(api: Any) -> None:
    """A read VEE deleted, in a span a late move-out then took from the account: neither the account's
    windows (it left them) nor its readings (it is gone) named it, and the copy kept it for good."""
    client, headers, url = api
    with psycopg.connect(url) as conn:
        record_installations(conn, [Installation("M", "SP-M", None, FITTED)], given=("removed_at",))
    items, _, since = _pull(client, headers, "A-M")
    copy = _copy(items)
    with psycopg.connect(url) as conn:
        conn.execute(SAY_WHO, ("vee:re-estimate", "a measured read came into its gap"))
        conn.execute("DELETE FROM readings WHERE meter_id = 'M' AND ts = %s", (START + timedelta(hours=20),))
        conn.commit()
        record_accounts(conn, [Agreement("A-M", "x", "SP-M", datetime(2025, 1, 1, tzinfo=UTC), SWAP, None)])
    for limit in (1, 5, 1000):
        again = dict(copy)
        _apply(again, *_pull(client, headers, "A-M", changed_since=since, limit=limit)[:2])
        assert again == _copy(_pull(client, headers, "A-M")[0]), limit
        assert sorted(ts[11:16] for ts, _ in again) == [f"{h:02d}:00" for h in range(12)]


def test_a_page_holds_at_most_limit_reads_and_removed_keys_together(api: Any) -> None:
    """A move-out dated back removes an account's reads by the thousand: they came in one page
    whatever the limit (108,000 keys, 26 MB, for a large account). Now a page holds at most
    ``limit`` reads and removed keys together, in one (ts, meter_id) order, and the pages add up."""
    client, headers, url = api
    items, _, since = _pull(client, headers, "A-M")
    copy = _copy(items)
    with psycopg.connect(url) as conn:  # the exchange on time, and the move-out at 12:00 entered late
        record_installations(
            conn,
            [Installation("M", "SP-M", None, FITTED, SWAP), Installation("N", "SP-M", None, SWAP)],
            given=("removed_at",),
        )
        record_accounts(
            conn, [Agreement("A-M", "x", "SP-M", datetime(2025, 1, 1, tzinfo=UTC), SWAP + timedelta(hours=6), None)]
        )
    page = client.get(
        "/billing/reads", params={**PULL, "account": "A-M", "changed_since": since, "limit": 4}, headers=headers
    ).json()
    pages: list[list[Key]] = []
    while True:
        pages.append(sorted((k["ts"], k["meter_id"]) for k in page["items"] + page["removed"]))
        _apply(copy, page["items"], page["removed"])
        if not page["next"]:
            break
        page = client.get(page["next"], headers=headers).json()
    assert max(len(keys) for keys in pages) == 4 and len(pages) > 1
    assert all(a[-1] < b[0] for a, b in itertools.pairwise(pages))  # in one order: no key twice, none skipped
    assert copy == _copy(_pull(client, headers, "A-M")[0])
