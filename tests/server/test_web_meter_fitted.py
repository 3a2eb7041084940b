"""A meter's page says where the meter is fitted now and whose account it serves, so a care agent can
check it with the caller: the service point and account ids to every key that reads meters, the
premises' address and the account holder's name (personal data) to customer care and admin only.
Before, the page said neither: a care agent who found the meter could not see whose it was."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import register_meters
from server.meters.withdrawals import withdraw_installation
from server.withdrawal import Withdrawal

NOW = datetime.now(UTC).replace(microsecond=0)
FITTED = NOW - timedelta(days=400)
MOVED_IN = NOW - timedelta(days=30)


@pytest.fixture
def pages(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str]]]:
    """M1 fitted at SP1 (12 Mill Lane) 400 days ago, whose account moved from A-OLD to A-NEW 30 days
    ago; M2 fitted at SP2, vacant; M3 removed from SP3 a day ago; M4 never fitted."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, role, [role]) for role in ("customer_care", "reader", "admin")}
        register_meters(conn, [(m, "D1", "customer") for m in ("M1", "M2", "M3", "M4")])
        conn.execute(
            "INSERT INTO service_points (service_point_id, address, dma) VALUES "
            "('SP1', '12 Mill Lane', 'D1'), ('SP2', '14 Mill Lane', 'D1'), ('SP3', '16 Mill Lane', 'D1')"
        )
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-OLD', 'Jo Former'), ('A-NEW', 'Sam Tenant')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) VALUES "
            "('SP1', 'M1', %(f)s, NULL), ('SP2', 'M2', %(f)s, NULL), ('SP3', 'M3', %(f)s, %(r)s)",
            {"f": FITTED, "r": NOW - timedelta(days=1)},
        )
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) VALUES "
            "('A-OLD', 'SP1', %(f)s, %(m)s), ('A-NEW', 'SP1', %(m)s, NULL)",
            {"f": FITTED, "m": MOVED_IN},
        )
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, keys


def _page(client: TestClient, key: str, meter_id: str) -> str:
    answer = client.get(f"/care/meters/{meter_id}", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    return answer.text


@pytest.mark.parametrize("role", ["customer_care", "admin"])
def test_customer_care_sees_the_address_and_the_account_holder_now(pages, role: str) -> None:
    client, _, keys = pages
    page = _page(client, keys[role], "M1")
    fitted = f"service point SP1, 12 Mill Lane (residential), since {FITTED:%Y-%m-%d %H:%M} UTC"
    assert f"<dt>Fitted at</dt><dd>{fitted}</dd>" in page
    assert f"<dt>Account</dt><dd>A-NEW, Sam Tenant, since {MOVED_IN:%Y-%m-%d %H:%M} UTC</dd>" in page
    assert "A-OLD" not in page and "Jo Former" not in page  # moved out: not whose meter it is now


def test_a_reader_sees_the_ids_without_the_personal_data(pages) -> None:
    client, _, keys = pages
    page = _page(client, keys["reader"], "M1")
    assert f"<dt>Fitted at</dt><dd>service point SP1 (residential), since {FITTED:%Y-%m-%d %H:%M} UTC</dd>" in page
    assert f"<dt>Account</dt><dd>A-NEW, since {MOVED_IN:%Y-%m-%d %H:%M} UTC</dd>" in page
    assert "Mill Lane" not in page and "Sam Tenant" not in page


def test_a_vacant_service_point_and_a_meter_fitted_nowhere_are_said(pages) -> None:
    client, _, keys = pages
    vacant = _page(client, keys["customer_care"], "M2")
    assert "14 Mill Lane" in vacant and "none now: no service agreement holds the service point (vacant)" in vacant
    for meter_id in ("M3", "M4"):  # removed yesterday; never fitted
        page = _page(client, keys["customer_care"], meter_id)
        assert "no service point now: " in page
        assert "16 Mill Lane" not in page and "<dt>Account</dt>" not in page
    assert "meterization has recorded no installation of it (never fitted)" in _page(client, keys["reader"], "M4")


def test_a_removed_meter_says_where_and_when_it_was_taken_out_with_its_card(pages) -> None:
    """An exchange's two job cards are what billing opens and closes on across it: the old meter's
    page says where and when it was removed, and the register on its removal card; the new meter's,
    the register on its installation card. Before, "never fitted, or removed" alone, and no card."""
    client, conn, keys = pages
    removed = NOW - timedelta(days=1)
    page = _page(client, keys["reader"], "M3")
    assert (
        f"removed from service point SP3 on {removed:%Y-%m-%d %H:%M} UTC, no register on its removal job card" in page
    )
    conn.execute("UPDATE meter_installations SET final_register_m3 = 12.1 WHERE meter_id = 'M3'")
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, initial_register_m3) "
        "VALUES ('SP3', 'M4', %s, 0.4)",
        (removed,),
    )
    page = _page(client, keys["reader"], "M3")
    when = f"{removed:%Y-%m-%d %H:%M} UTC"
    assert f"removed from service point SP3 on {when}, its removal job card's register 12.100 m³" in page
    fitted = f"service point SP3 (residential), since {when}, its installation job card's register 0.400 m³"
    assert f"<dt>Fitted at</dt><dd>{fitted}</dd>" in _page(client, keys["reader"], "M4")


def test_a_meter_s_withdrawn_installations_are_shown_with_who_when_and_why(pages) -> None:
    """M2's installation at SP2 withdrawn (recorded in error), then M3's at SP3, which the clerk
    reinstated: the page lists both, the latest withdrawn first, with the dates they said, who, when
    and why (a person's words, escaped). Before, the page showed no trace of a withdrawal."""
    client, conn, keys = pages
    with conn.transaction():
        withdraw_installation(conn, "M2", FITTED, Withdrawal("Bea", "keyed against <SP2> & not SP4"))
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP2', 'M2', %s)",
        (MOVED_IN,),
    )
    with conn.transaction():
        withdraw_installation(conn, "M2", MOVED_IN, Withdrawal("Cal", "the wrong meter's serial on the job card"))
    conn.execute("UPDATE withdrawn_installations SET reinstated_at = withdrawn_at WHERE reason LIKE 'the wrong%'")
    stamps = conn.execute(
        "SELECT withdrawn_at FROM withdrawn_installations WHERE meter_id = 'M2' ORDER BY withdrawal_id"
    ).fetchall()
    first, second = (stamp.astimezone(UTC) for (stamp,) in stamps)
    page = _page(client, keys["reader"], "M2")
    latest = (
        f"<li>service point SP2 from {MOVED_IN:%Y-%m-%d %H:%M} UTC (not removed): withdrawn by Cal on "
        f"{second:%Y-%m-%d %H:%M} UTC, “the wrong meter&#39;s serial on the job card”; reinstated on "
        f"{second:%Y-%m-%d %H:%M} UTC</li>"
    )
    earlier = (
        f"<li>service point SP2 from {FITTED:%Y-%m-%d %H:%M} UTC (not removed): withdrawn by Bea on "
        f"{first:%Y-%m-%d %H:%M} UTC, “keyed against &lt;SP2&gt; &amp; not SP4”</li>"
    )
    assert f'<dt>Withdrawn installations</dt><dd><ul class="withdrawn">{latest}{earlier}</ul></dd>' in page
    for meter_id in ("M1", "M4"):  # none withdrawn: nothing said
        assert "Withdrawn installations" not in _page(client, keys["reader"], meter_id)


def test_a_meter_gone_from_the_network_still_lists_its_withdrawn_installations(pages) -> None:
    """M2's installation at SP2 withdrawn, then its row taken out of ``meters`` (removed from the network):
    its page is the 404 that says so, and lists the withdrawal, which ``withdrawn_installations`` keeps.
    Before, the 404 page listed enquiries and alerts only: the withdrawal was nowhere a clerk could see."""
    client, conn, keys = pages
    with conn.transaction():
        withdraw_installation(conn, "M2", FITTED, Withdrawal("Bea", "keyed against SP2, not SP4"))
    conn.execute("DELETE FROM meters WHERE meter_id = 'M2'")
    (stamp,) = conn.execute("SELECT withdrawn_at FROM withdrawn_installations WHERE meter_id = 'M2'").fetchone()
    answer = client.get("/care/meters/M2", headers={"Authorization": f"Bearer {keys['reader']}"})
    assert answer.status_code == 404
    assert "There is no meter M2 on the network" in answer.text
    assert "The installations of it withdrawn as recorded in error, the enquiries and alerts" in answer.text
    withdrawn = (
        f'<ul class="withdrawn"><li>service point SP2 from {FITTED:%Y-%m-%d %H:%M} UTC (not removed): withdrawn by '
        f"Bea on {stamp.astimezone(UTC):%Y-%m-%d %H:%M} UTC, “keyed against SP2, not SP4”</li></ul>"
    )
    assert "<h2>Withdrawn installations" in answer.text and withdrawn in answer.text
    gone = client.get("/care/meters/M9", headers={"Authorization": f"Bearer {keys['reader']}"})
    assert gone.status_code == 404 and "Withdrawn installations" not in gone.text  # none withdrawn: nothing said
