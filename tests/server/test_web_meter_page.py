"""A meter's page (/care/meters/{id}): the meter as the meters API gives it, its daily consumption as
stored (a bar chart and a table, estimated and edited days marked), its readings newest first,
paged, and its alerts with their enquiries. Before, the meters page linked a meter's id to the JSON
API (/meters/{id}/readings), and the care desk and an enquiry named a meter without a link."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH
from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind, AlertStatus
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key
from server.decimals import fixed_point
from server.meters.repository import register_meters
from server.web.flow import flow_l_h
from server.web.meter_page import ACTIVE_SHOWN, ENQUIRIES_SHOWN, READINGS_PER_PAGE

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOURS = 72  # readings at T0 and every hour after, to T0 + 72 h: three whole days of intervals
ESTIMATED = T0 + timedelta(days=1, hours=10)  # closes an interval of 2 March
EDITED = T0 + timedelta(days=2, hours=5)  # of 3 March


def _volume(hour: int) -> Decimal:
    """A register that goes up by 0 to 48 L an hour, by the hour of the day."""
    return Decimal("100.000") + sum((Decimal(h % 5) * Decimal("0.012") for h in range(hour)), Decimal(0))


@pytest.fixture
def meter(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str]]]:
    """Meter M1 in D1 with 73 hourly readings (one estimated, one edited, one with a leak alarm),
    its consumption stored, an open burst (with its enquiry) and a resolved leak; keys by role."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, role, [role]) for role in ("customer_care", "reader", "billing")}
        register_meters(conn, [("M1", "D1", "customer"), ("M2", "D1", "customer")])
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M1'")  # as the collector's ingest does
        for hour in range(HOURS + 1):
            ts = T0 + timedelta(hours=hour)
            quality, by, reason = "actual", None, None
            if ts == ESTIMATED:
                quality, by, reason = "estimated", "vee", "gap"
            elif ts == EDITED:
                quality, by, reason = "edited", "alice", "register photo"
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h, alarms, quality, quality_by, quality_reason)"
                " VALUES ('M1', %s, %s, %s, %s, %s, %s, %s)",
                (ts, _volume(hour), (hour % 5) * 0.012, ["leak"] if hour == HOURS else [], quality, by, reason),
            )
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=4)))
        at = T0 + timedelta(hours=HOURS)
        burst = new_alert(
            AlertKind.BURST, "M1", "D1", start=at - timedelta(hours=2), detected_at=at, last_seen=at,
            ended_at=None, rate_l_h=186.0, volume_l=372.0, confidence=0.8, evidence=((at - timedelta(hours=1), at),),
        ).replace(updated_at=at)  # fmt: skip
        leak = new_alert(
            AlertKind.LEAK, "M1", "D1", start=T0, detected_at=T0 + timedelta(hours=6),
            last_seen=T0 + timedelta(hours=9), ended_at=T0 + timedelta(hours=9), rate_l_h=12.25, volume_l=110.25,
            confidence=0.9, evidence=((T0, T0 + timedelta(hours=9)),),
        ).replace(updated_at=T0 + timedelta(hours=9))  # fmt: skip
        leak = replace(leak, status=AlertStatus.RESOLVED, resolved_at=T0 + timedelta(hours=10))
        other = new_alert(
            AlertKind.BURST, "M2", "D1", start=at, detected_at=at, last_seen=at, ended_at=None,
            rate_l_h=50.0, volume_l=50.0, confidence=0.8, evidence=((at - timedelta(hours=1), at),),
        ).replace(updated_at=at)  # fmt: skip
        save_changes(conn, AlertChanges(opened=[burst, leak, other]))
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, keys


def _get(client: TestClient, key: str | None, path: str) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


def _section(page: str, heading: str) -> str:
    return page.split(f"<h2>{heading}")[1].split("</section>")[0]


def _cells(row: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def test_the_meter_s_facts_are_the_api_s(meter) -> None:
    client, _, keys = meter
    page = _get(client, keys["reader"], "/care/meters/M1")
    api = client.get("/meters/M1", headers={"Authorization": f"Bearer {keys['reader']}"}).json()
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", page.split("</dl>")[0], re.S))
    assert facts["District (DMA)"] == api["dma"] == "D1"
    assert facts["Registered"].startswith("yes") and api["registered"]
    assert facts["Role"] == api["role"] == "customer"
    first_seen = datetime.fromisoformat(api["first_seen"]).strftime("%Y-%m-%d %H:%M:%S")
    assert facts["Known since"] == f"{first_seen} UTC"
    latest = api["latest"]
    assert facts["Latest reading"] == f"{latest['volume_m3']} m³ at 2026-03-04 00:00:00 UTC, {latest['quality']}"
    assert "<title>Meter M1 · aquami</title>" in page


def test_first_reading_is_the_oldest_reading_and_known_since_when_the_row_was_made(meter) -> None:
    """A meter registered after its readings were loaded (M1: registered today, read since 1 March):
    "Known since" is when its row was made, "First reading" its oldest reading; a meter with none says
    so. Before, the page had only "First seen", the row's time, which reads as the first reading."""
    client, conn, keys = meter
    page = _get(client, keys["reader"], "/care/meters/M1")
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", page.split("</dl>")[0], re.S))
    (made,) = conn.execute("SELECT first_seen FROM meters WHERE meter_id = 'M1'").fetchone()
    assert made > T0 + timedelta(hours=HOURS)  # the row is younger than every reading: the two differ
    assert "First seen" not in facts
    assert facts["Known since"] == f"{made.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    first = client.get("/meters/M1/readings", headers={"Authorization": f"Bearer {keys['reader']}"}).json()["items"][0]
    assert first["ts"] == "2026-03-01T00:00:00Z"
    assert facts["First reading"] == f"{first['volume_m3']} m³ at 2026-03-01 00:00:00 UTC, actual"
    unread = _get(client, keys["reader"], "/care/meters/M2")
    unread_facts = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", unread.split("</dl>")[0], re.S))
    assert unread_facts["First reading"] == '<span class="muted">none yet</span>'


def test_the_readings_are_the_api_s_newest_first_and_paged(meter) -> None:
    client, _, keys = meter
    api = client.get("/meters/M1/readings", headers={"Authorization": f"Bearer {keys['reader']}"}).json()["items"]
    newest_first = api[::-1]
    expected = [
        [
            datetime.fromisoformat(r["ts"]).strftime("%Y-%m-%d %H:%M:%S"),
            r["volume_m3"],
            flow_l_h(r["flow_m3h"]),
            "—",
            " ".join(r["alarms"]),
            r["quality"] + (f" by {r['quality_by']}: {r['quality_reason']}" if r["quality_by"] else ""),
        ]
        for r in newest_first
    ]
    first = _get(client, keys["customer_care"], "/care/meters/M1")
    rows = _section(first, "Readings").split("<tbody>")[1].split("<tr>")[1:]
    assert [_cells(row) for row in rows] == expected[:READINGS_PER_PAGE]
    older = re.search(r'<a href="([^"]+)">older readings</a>', first)
    assert older is not None
    second = _get(client, keys["customer_care"], html.unescape(older[1]))
    rows = _section(second, "Readings").split("<tbody>")[1].split("<tr>")[1:]
    assert [_cells(row) for row in rows] == expected[READINGS_PER_PAGE:]
    assert "older readings" not in second and '<a href="/care/meters/M1">newest readings</a>' in second


def test_each_day_s_volume_is_what_the_api_s_registers_say_and_not_actual_days_are_marked(meter) -> None:
    client, _, keys = meter
    api = client.get("/meters/M1/readings", headers={"Authorization": f"Bearer {keys['reader']}"}).json()["items"]
    register = {datetime.fromisoformat(r["ts"]): Decimal(r["volume_m3"]) for r in api}
    page = _get(client, keys["reader"], "/care/meters/M1")
    table = page.split('<table class="days">')[1].split("</table>")[0]
    shown = {cells[0]: cells[1:] for cells in map(_cells, table.split("<tbody>")[1].split("<tr")[1:])}
    assert list(shown) == ["2026-03-03", "2026-03-02", "2026-03-01"]  # newest first, the span of the readings
    for day in range(3):
        start = T0 + timedelta(days=day)
        used = register[start + timedelta(days=1)] - register[start]
        volume, reads = shown[(start.date()).isoformat()]
        assert Decimal(volume) == used, (start, volume, used)
        assert reads == {0: "24 actual", 1: "1 estimated of 24 intervals", 2: "1 edited of 24 intervals"}[day]
    assert re.findall(r'<rect class="actual"[^>]*><title>(\d{4}-\d\d-\d\d)', page) == ["2026-03-01"]
    marked = re.findall(r'<rect class="not-actual"[^>]*><title>(\d{4}-\d\d-\d\d)', page)
    assert marked == ["2026-03-02", "2026-03-03"]
    highest = max(register[T0 + timedelta(days=d + 1)] - register[T0 + timedelta(days=d)] for d in range(3))
    assert f"the highest day {fixed_point(highest)} m³" in page


def test_the_alerts_show_active_first_with_their_enquiry_linked(meter) -> None:
    client, conn, keys = meter
    page = _get(client, keys["customer_care"], "/care/meters/M1")
    items = _section(page, "Alerts").split("<li>")[1:]
    api = client.get("/alerts?meter_id=M1", headers={"Authorization": f"Bearer {keys['reader']}"}).json()["items"]
    assert [(a["kind"], a["status"]) for a in api] == [("burst", "open"), ("leak", "resolved")]
    assert len(items) == 2 and "burst" in items[0] and "leak" in items[1]  # M2's burst is not M1's
    (enquiry_id,) = conn.execute(
        "SELECT enquiry_id FROM enquiries WHERE alert_id = %s", (api[0]["alert_id"],)
    ).fetchone()
    assert f'<a href="/care/enquiries/{enquiry_id}"' in items[0]
    assert "about 186.0 L/h" in items[0] and "372.0 L so far" in items[0] and ">open<" in items[0]
    assert "about 12.3 L/h" in items[1] and "110.3 L ·" in items[1] and ">resolved<" in items[1]


def test_the_meters_page_the_care_desk_and_the_enquiry_link_to_the_meter_s_page(meter) -> None:
    client, conn, keys = meter
    key = keys["customer_care"]
    assert '<a href="/care/meters/M1">M1</a>' in _get(client, key, "/")
    assert "/meters/M1/readings" not in _get(client, key, "/")
    assert 'meter <a href="/care/meters/M1">M1</a>' in _get(client, key, "/care/enquiries")
    (enquiry_id,) = conn.execute("SELECT enquiry_id FROM enquiries WHERE meter_id = 'M1'").fetchone()
    assert 'meter <a href="/care/meters/M1">M1</a>' in _get(client, key, f"/care/enquiries/{enquiry_id}")


def test_a_meter_without_readings_says_so(meter) -> None:
    client, _, keys = meter
    page = _get(client, keys["reader"], "/care/meters/M2")
    assert "No consumption stored yet" in page and "No readings yet" in page and "<svg" not in page


def test_an_unknown_meter_is_the_404_page(meter) -> None:
    client, _, keys = meter
    response = client.get("/care/meters/NOPE", headers={"Authorization": f"Bearer {keys['reader']}"})
    assert (response.status_code, response.headers["content-type"]) == (404, "text/html; charset=utf-8")
    assert '<p class="error">There is no meter NOPE on the network' in response.text
    assert "No enquiries name this meter." in response.text and "No alerts." in response.text
    assert "<h2>Readings" not in response.text and "<title>Meter NOPE · not found · aquami</title>" in response.text


def test_a_meter_not_on_the_network_still_lists_the_enquiries_and_alerts_that_name_it(meter) -> None:
    """A meter removed from ``meters`` (or named by a member of staff) is still named by enquiries and
    alerts, whose pages link here: the page is a 404 that says so and lists them. Before, the link
    opened the bare 404 page, and nothing led from the meter to its enquiries."""
    client, conn, keys = meter
    at = T0 + timedelta(hours=HOURS)
    ghost = new_alert(
        AlertKind.BURST, "GONE", "D1", start=at, detected_at=at, last_seen=at, ended_at=None,
        rate_l_h=40.0, volume_l=40.0, confidence=0.8, evidence=((at - timedelta(hours=1), at),),
    ).replace(updated_at=at)  # fmt: skip
    save_changes(conn, AlertChanges(opened=[ghost]))
    staff = _raise(conn, "GONE", "open", "low", at)
    (raised,) = conn.execute("SELECT enquiry_id FROM enquiries WHERE alert_id = %s", (ghost.alert_id,)).fetchone()
    key = keys["customer_care"]
    assert 'meter <a href="/care/meters/GONE">GONE</a>' in _get(client, key, f"/care/enquiries/{staff}")
    response = client.get("/care/meters/GONE", headers={"Authorization": f"Bearer {key}"})
    assert (response.status_code, response.headers["content-type"]) == (404, "text/html; charset=utf-8")
    assert '<p class="error">There is no meter GONE on the network' in response.text
    assert _listed(response.text) == [raised, staff]  # the burst's (urgent or high) before low, as on the desk
    alerts = _section(response.text, "Alerts")
    assert "burst" in alerts and f'<a href="/care/enquiries/{raised}"' in alerts
    assert '<a href="/alerts?meter_id=GONE">as JSON</a>' in alerts
    assert "<h2>Readings" not in response.text and "<svg" not in response.text


def _listed(page: str) -> list[int]:
    """The enquiries the meter page's Enquiries section lists, in its order."""
    return [int(n) for n in re.findall(r'<li><a href="/care/enquiries/([0-9]+)"', _section(page, "Enquiries"))]


def _desk_order(client: TestClient, key: str) -> list[int]:
    """The enquiries on the care desk's first page, in its order."""
    desk = _get(client, key, "/care/enquiries")
    return [int(n) for n in re.findall(r'<tr>\s*<td><a href="/care/enquiries/([0-9]+)"', desk)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raised=st.lists(
        st.tuples(
            st.sampled_from(["open", "in_progress", "escalated", "closed"]),
            st.sampled_from(["urgent", "high", "normal", "low"]),
            st.integers(0, 3),  # days after T0: enquiries opened at the same instant too
            st.sampled_from(["M1", "M2"]),
        ),
        max_size=10,
    )
)
def test_every_enquiry_naming_the_meter_is_listed_in_the_care_desk_s_order(meter, raised) -> None:
    """Staff's and detection's enquiries about M1, and none of M2's, each linked to its page, the ones
    being worked first (urgent to low, the newest first), then the closed ones: the care desk's order.
    Before, the page listed only the enquiries its alerts raised, beside each alert."""
    client, conn, keys = meter
    conn.execute("DELETE FROM enquiries WHERE source = 'staff'")  # the previous example's
    for status, priority, day, meter_id in raised:
        _raise(conn, meter_id, status, priority, T0 + timedelta(days=day))
    key = keys["customer_care"]
    named = {n for (n,) in conn.execute("SELECT enquiry_id FROM enquiries WHERE meter_id = 'M1'").fetchall()}
    listed = _listed(_get(client, key, "/care/meters/M1"))
    assert listed == [n for n in _desk_order(client, key) if n in named]
    assert set(listed) == named and len(named) >= 2  # the burst's and the leak's, at the least


def test_more_enquiries_than_shown_link_the_care_desk_filtered_by_the_meter(meter) -> None:
    """The page shows the first ENQUIRIES_SHOWN and links "all of them" to the care desk filtered by
    the meter, which lists every one, in the same order, and the API's list "as JSON". Before, "all of
    them" was the API's JSON list, as the desk took no meter filter."""
    client, conn, keys = meter
    for n in range(ENQUIRIES_SHOWN + 3):
        _raise(conn, "M1", "open", "normal", T0 + timedelta(minutes=n))
        _raise(conn, "M2", "open", "normal", T0 + timedelta(minutes=n))
    page = _get(client, keys["reader"], "/care/meters/M1")
    assert len(_listed(page)) == ENQUIRIES_SHOWN
    section = _section(page, "Enquiries")
    assert '<a href="/care/enquiries?meter_id=M1">all of them</a> on the care desk' in section
    assert '<a href="/enquiries?meter_id=M1">as JSON</a>' in section
    desk = _get(client, keys["reader"], "/care/enquiries?meter_id=M1")
    named = [n for (n,) in conn.execute("SELECT enquiry_id FROM enquiries WHERE meter_id = 'M1'").fetchall()]
    on_the_desk = [int(n) for n in re.findall(r'<tr>\s*<td><a href="/care/enquiries/([0-9]+)"', desk)]
    assert sorted(on_the_desk) == sorted(named) and on_the_desk[:ENQUIRIES_SHOWN] == _listed(page)


@pytest.mark.parametrize("length", [IDENTIFIER_MAX_LENGTH, IDENTIFIER_MAX_LENGTH + 1, 1000])
def test_every_api_link_on_the_page_answers_for_a_meter_id_of_any_length(meter, length) -> None:
    """A meter registered before ids were checked may have an id longer than the contract's 64
    characters (``meters.meter_id`` is unchecked text): the page links the API's lists and the care
    desk filtered by it, and each answers with the meter's. Before, the filters took 64 characters at
    most, and the page left a longer id's links out (a 422 and a 400 otherwise)."""
    client, conn, keys = meter
    meter_id = "L" * length
    register_meters(conn, [(meter_id, "D1", "customer")])
    at = T0 + timedelta(hours=HOURS)
    alerts = []
    for n in range(ACTIVE_SHOWN + 1):
        alert = new_alert(
            AlertKind.BURST, meter_id, "D1", start=at, detected_at=at + timedelta(minutes=n), last_seen=at,
            ended_at=None, rate_l_h=40.0, volume_l=40.0, confidence=0.8, evidence=((at - timedelta(hours=1), at),),
        )  # fmt: skip
        alerts.append(alert.replace(updated_at=at))
    save_changes(conn, AlertChanges(opened=alerts))
    for n in range(ENQUIRIES_SHOWN + 1):
        _raise(conn, meter_id, "open", "low", T0 + timedelta(minutes=n))
    page = _get(client, keys["reader"], f"/care/meters/{meter_id}")
    links = {html.unescape(href) for href in re.findall(r'href="(/(?:alerts|enquiries)\?[^"]*)"', page)}
    on_the_desk = [html.unescape(href) for href in re.findall(r'href="(/care/enquiries\?meter_id=[^"]*)"', page)]
    for link in on_the_desk:
        desk = _get(client, keys["reader"], link)
        rows = [int(n) for n in re.findall(r'<tr>\s*<td><a href="/care/enquiries/([0-9]+)"', desk)]
        named = {n for (n,) in conn.execute("SELECT enquiry_id FROM enquiries WHERE meter_id = %s", (meter_id,))}
        assert set(rows) <= named and len(rows) == min(len(named), 50), (rows, named)
    for link in links:
        answer = client.get(link, headers={"Authorization": f"Bearer {keys['reader']}"})
        assert answer.status_code == 200, f"{link}: {answer.status_code} {answer.text}"
        assert answer.json()["items"] and {item["meter_id"] for item in answer.json()["items"]} == {meter_id}
    assert "More active alerts than shown" in page and "More enquiries than shown" in page
    assert len(links) == 2 and len(set(on_the_desk)) == 1  # the alerts' and the enquiries'; the desk's


@pytest.mark.parametrize(
    "before",
    [
        "yesterday",
        "2026-03-02T00:00:00",  # no offset: not a link the page made
        "2026-03-02T12.5+00:00",  # ISO 8601's 12:30, which fromisoformat read as 12:00:00.5
        "2026-03-02T12:30.5+00:00",  # 12:30:30, read as 12:30:00.5
        "2026-03-02x12:00+00:00",  # fromisoformat took any character between the date and the time
        "0001-01-01T00:00+01:00",  # in the year 0 in UTC
        "9999-12-31T23:00-02:00",  # in the year 10000 in UTC
    ],
)
def test_a_readings_link_this_page_did_not_make_is_a_400_page(meter, before: str) -> None:
    """The cursor is read as the server reads every stored time (aquami.stored_times.aware_utc).
    Before, Python's ``fromisoformat`` read it: a fraction of an hour or a minute was taken as one of
    a second (a page that silently began half an hour off), any character passed between the date and
    the time, and a time outside the years 1 to 9999 once in UTC was sent to the database."""
    client, _, keys = meter
    response = client.get(
        f"/care/meters/M1?{urlencode({'before': before})}", headers={"Authorization": f"Bearer {keys['reader']}"}
    )
    assert response.status_code == 400, response.text
    assert '<p class="error">That readings page' in response.text


@pytest.mark.parametrize(
    "written",
    ["2026-03-03T14:00:00Z", "2026-03-03T14:00:00+00:00", "2026-03-03T19:30:00+05:30", "2026-03-03T06:00-08:00"],
)
def test_a_readings_cursor_with_any_utc_offset_names_the_same_instant(meter, written: str) -> None:
    """A cursor with an offset other than UTC's is the instant it names (14:00 UTC here): the same
    page as UTC's, whose "older readings" link is written in UTC."""
    client, _, keys = meter
    instant = T0 + timedelta(hours=HOURS - 10)
    assert instant == datetime(2026, 3, 3, 14, tzinfo=UTC)
    page = _get(client, keys["reader"], f"/care/meters/M1?{urlencode({'before': written})}")
    rows = _section(page, "Readings").split("<tbody>")[1].split("<tr>")[1:]
    shown = [datetime.strptime(_cells(row)[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) for row in rows]
    assert shown[0] == instant - timedelta(hours=1) and shown == sorted(shown, reverse=True)
    older = re.search(r'<a href="([^"]+)">older readings</a>', page)
    assert older is not None
    assert html.unescape(older[1]).endswith(urlencode({"before": shown[-1].isoformat()}))


def test_a_key_without_a_meter_role_gets_the_sign_in_form_and_no_key_a_401(meter) -> None:
    client, _, keys = meter
    refused = client.get("/care/meters/M1", headers={"Authorization": f"Bearer {keys['billing']}"})
    assert refused.status_code == 403 and 'action="/login"' in refused.text and "Sign out" in refused.text
    assert "M1" not in refused.text.split("<main>")[1]
    anonymous = client.get("/care/meters/M1")
    assert anonymous.status_code == 401 and 'action="/login"' in anonymous.text
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    unknown = client.get("/care/meters/NOPE")  # whether a meter exists is not told before sign-in
    assert unknown.status_code == 401


def test_head_answers_as_get_without_a_body(meter) -> None:
    client, _, keys = meter
    response = client.head("/care/meters/M1", headers={"Authorization": f"Bearer {keys['reader']}"})
    assert response.status_code == 200 and response.content == b""


def test_the_chart_s_days_are_the_utility_s(meter) -> None:
    """With the utility's zone east of UTC, a day begins at its local midnight: the table's dates are
    the local ones, as consumption_daily stores them."""
    client, conn, keys = meter
    conn.execute("SELECT set_utility_timezone('Australia/Sydney')")
    page = _get(client, keys["reader"], "/care/meters/M1")
    table = page.split('<table class="days">')[1].split("</table>")[0]
    days = [date.fromisoformat(_cells(row)[0]) for row in table.split("<tbody>")[1].split("<tr")[1:]]
    assert days == [date(2026, 3, 4), date(2026, 3, 3), date(2026, 3, 2), date(2026, 3, 1)]
    assert "(Australia/Sydney)" in page


def _raise(conn: psycopg.Connection, meter_id: str, status: str, priority: str, opened_at: datetime) -> int:
    """An enquiry a member of staff raised about the meter; its id."""
    row = conn.execute(
        "INSERT INTO enquiries (kind, category, source, status, priority, subject, meter_id, opened_at, closed_at)"
        " VALUES ('complaint', 'water_quality', 'staff', %s, %s, 'brown water', %s, %s, %s) RETURNING enquiry_id",
        (status, priority, meter_id, opened_at, opened_at if status == "closed" else None),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_enquiries_api_filtered_by_meter_id_pages_through_that_meter_s_alone(meter) -> None:
    """``GET /enquiries?meter_id=`` lists every enquiry naming the meter, newest first, and no other
    meter's. Before, the list had no such filter: ``meter_id`` was ignored, and every meter's came."""
    client, conn, keys = meter
    for n in range(12):
        _raise(conn, "M1" if n % 3 else "M2", "open", "normal", T0 + timedelta(minutes=n))
    named = {n for (n,) in conn.execute("SELECT enquiry_id FROM enquiries WHERE meter_id = 'M1'").fetchall()}
    listed: list[int] = []
    url: str | None = "/enquiries?meter_id=M1&limit=5"
    while url:
        answer = client.get(url, headers={"Authorization": f"Bearer {keys['reader']}"})
        assert answer.status_code == 200, answer.text
        assert {item["meter_id"] for item in answer.json()["items"]} <= {"M1"}
        listed += [item["enquiry_id"] for item in answer.json()["items"]]
        url = answer.json()["next"]
    assert listed == sorted(named, reverse=True) and len(listed) == 10  # 8 of staff's, the burst's and the leak's
    parameters = client.get("/openapi.json").json()["paths"]["/enquiries"]["get"]["parameters"]
    (meter_id,) = [p for p in parameters if p["name"] == "meter_id"]
    assert meter_id["in"] == "query" and "maxLength" not in meter_id["schema"]["anyOf"][0]  # as meters holds
