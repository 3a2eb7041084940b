"""The web page a care desk works from: every meter and the most urgent alerts reachable, figures
as the API gives them, and the signed-in page neither cached nor framed nor signed in by another site."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import save_changes
from collector.detection.alerts import Alert, AlertKind, AlertSource, AlertStatus
from collector.detection.lifecycle import AlertChanges
from server import auth
from server.app import create_app
from server.auth import SESSION_COOKIE, SESSION_PREFIX, create_api_key
from server.web.router import ALERTS_SHOWN, METERS_PER_PAGE

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[tuple[TestClient, str, psycopg.Connection]]:
    """A client, a customer-care key and a connection to write the page's data with."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "care desk", ["customer_care"])
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, key, conn


def _page(client: TestClient, key: str, path: str = "/") -> str:
    response = client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.text


def _alert(n: int, kind: AlertKind, rate_l_h: float, source: AlertSource = AlertSource.DETECTOR) -> Alert:
    at = T0 + timedelta(hours=n)
    return Alert(
        alert_id=f"{kind}/M{n}",
        kind=kind,
        meter_id=f"M{n}",
        dma="DMA1",
        start=at,
        detected_at=at,
        last_seen=at + timedelta(hours=6),
        rate_l_h=rate_l_h,
        volume_l=rate_l_h * 6,
        confidence=0.9,
        evidence=((at, at + timedelta(hours=1)),),
        updated_at=at,
        source=source,
    )


def test_an_urgent_burst_is_shown_before_newer_low_batteries_and_the_rest_are_counted(desk) -> None:
    client, key, conn = desk
    alerts = [_alert(0, AlertKind.BURST, 900.0, AlertSource.DETECTOR)]
    alerts += [_alert(n, AlertKind.LOW_BATTERY, 0.0, AlertSource.METER) for n in range(1, ALERTS_SHOWN + 5)]
    save_changes(conn, AlertChanges(opened=alerts))
    box = _page(client, key).split('<section class="alerts">')[1].split("</section>")[0]
    items = box.split("<li>")[1:]
    assert len(items) == ALERTS_SHOWN
    assert "burst" in items[0] and "M0" in items[0] and "urgent" in items[0]
    assert f"open or ongoing: {len(alerts)} <small>the {ALERTS_SHOWN} most urgent shown;" in box
    assert 'href="/alerts?status=open"' in box


def test_every_meter_is_reached_page_by_page(desk) -> None:
    client, key, conn = desk
    count = METERS_PER_PAGE + 2
    conn.execute(
        "INSERT INTO meters (meter_id, registered) SELECT 'M' || lpad(i::text, 4, '0'), true "
        "FROM generate_series(1, %s) i",
        (count,),
    )
    first = _page(client, key)
    assert first.count('<a href="/care/meters/') == METERS_PER_PAGE
    link = re.search(r'<a href="(/\?after=[^"]+)">next', first)
    assert link is not None, "no link to the next page"
    second = _page(client, key, link[1])
    assert re.findall(r'<a href="/care/meters/(M\d+)">', second) == [f"M{count - 1:04d}", f"M{count:04d}"]
    assert '<a href="/">first page</a>' in second and "next" not in second.split("first page")[1]


def test_a_meter_id_with_url_characters_links_to_that_meter(desk) -> None:
    """register-meters takes only names a gateway can send, but a database from before it checked may
    hold others: their links must still lead to them, not to "A" or "LOT" (nor, for "A/B", to a 404)."""
    client, key, conn = desk
    for meter_id in ("A?B", "LOT#7", "50%OFF", "A/B"):
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter_id,))
        conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, 1.5)", (meter_id, T0))
    links = re.findall(r'<a href="(/care/meters/[^"]+)">', _page(client, key))
    assert len(links) == 4
    answered = set()
    for link in links:
        response = client.get(link, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, (link, response.text)
        title = re.search(r"<h1>Meter (.+?)(?: <span|</h1>)", response.text)
        assert title is not None, response.text
        answered.add(html.unescape(title[1]))
    assert answered == {"A?B", "LOT#7", "50%OFF", "A/B"}


def test_flows_read_as_the_alert_and_the_meter_give_them(desk) -> None:
    """A meter's own leak alarm without a flow reading is "flow not measured", not "about 0 L/h" (read
    as no leak); a 0.45 L/h reverse flow is 0.5 L/h as its enquiry says; a 50 mL/h flow is plain digits."""
    client, key, conn = desk
    save_changes(
        conn,
        AlertChanges(
            opened=[
                _alert(1, AlertKind.LEAK, 0.0, AlertSource.METER),
                _alert(2, AlertKind.REVERSE_FLOW, 0.45, AlertSource.DETECTOR),
            ]
        ),
    )
    conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M9', true)")
    conn.execute(
        "INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h) VALUES ('M9', %s, %s, 5e-05)", (T0, Decimal(1))
    )
    page = _page(client, key)
    leak = re.search(r'leak</span>\s*<a href="/care/meters/M1">M1</a>([^<]*)', page)
    reverse = re.search(r'reverse flow</span>\s*<a href="/care/meters/M2">M2</a>([^<]*)', page)
    assert leak is not None and reverse is not None, page
    assert "flow not measured" in leak[1] and "L/h" not in leak[1] and "so far" not in leak[1]
    assert "about 0.5 L/h" in reverse[1] and "2.7 L so far" in reverse[1]
    assert '<td class="num" title="0.00005 m³/h">0.1</td>' in page  # 50 mL/h, to 0.1 L/h: not "0.0"


def test_a_rate_and_its_volume_read_as_the_alert_s_enquiry_rounds_them(desk) -> None:
    """The page rounded with '%.1f' (the binary value, ties to even) where the enquiry's subject rounds
    with PostgreSQL's round(rate::numeric, 1) (ties away from zero): 0.25 L/h was "about 0.2 L/h"
    beside an enquiry of 0.3 L/h, 12.25 was 12.2 beside 12.3, 0.35 was 0.3 beside 0.4."""
    client, key, conn = desk
    rates = {1: 0.25, 2: 12.25, 3: 0.35}
    volumes = {1: "1.5", 2: "73.5", 3: "4.4"}  # 6 h of the first two; 4.35 L (binary 4.3499…) of the third
    alerts = [_alert(1, AlertKind.LEAK, 0.25), _alert(2, AlertKind.LEAK, 12.25)]
    alerts.append(replace(_alert(3, AlertKind.LEAK, 0.35), volume_l=4.35))
    save_changes(conn, AlertChanges(opened=alerts))
    page = _page(client, key)
    for n, rate in rates.items():
        shown = re.search(
            rf'leak</span>\s*<a href="/care/meters/M{n}">M{n}</a> · about ([\d.]+) L/h[^<]* · ([\d.]+) L so far', page
        )
        subject = conn.execute("SELECT subject FROM enquiries WHERE alert_id = %s", (f"leak/M{n}",)).fetchone()
        assert shown is not None and subject is not None, page
        assert f": {shown[1]} L/h since" in subject[0], (rate, shown[1], subject[0])
        assert shown[2] == volumes[n]


def test_the_signed_in_page_is_not_kept_by_the_browser_nor_framed(desk) -> None:
    client, key, _ = desk
    for response in (
        client.get("/", headers={"Authorization": f"Bearer {key}"}),
        client.get("/"),
        client.get("/login", params={"key": key}, headers={"Sec-Fetch-Site": "none"}, follow_redirects=False),
        client.get("/login", params={"key": key}),  # "Sign in as …?": a page another site could frame to click
    ):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_another_site_cannot_sign_someone_in_under_its_key(desk) -> None:
    """Login CSRF: another site's form (or link) would sign staff in as the attacker's key, and what
    they then did would be recorded under that name."""
    client, key, _ = desk
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    posted = client.post("/login", data={"key": key}, headers=cross_site, follow_redirects=False)
    linked = client.get("/login", params={"key": key}, headers=cross_site, follow_redirects=False)
    assert posted.status_code == 403 and "Sign in" in posted.text
    assert linked.status_code == 200 and "Sign in as care desk?" in linked.text  # asked, not signed in
    for response in (posted, linked):
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    signed_in = client.post("/login", data={"key": key}, headers={"Sec-Fetch-Site": "same-origin"})
    assert signed_in.status_code == 200 and "care desk" in signed_in.text


def test_without_a_valid_key_the_page_is_a_401_that_says_how_to_authenticate(desk) -> None:
    """RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate; the page's had none, the API's had."""
    client, _, conn = desk
    revoked = create_api_key(conn, "gone", ["customer_care"])
    conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'gone'")
    client.cookies.set(SESSION_COOKIE, revoked)
    answers = [client.get("/"), client.get("/", headers={"Authorization": "Bearer aqk_nosuch.key"})]
    client.cookies.clear()
    answers += [
        client.get("/"),
        client.post("/login", data={"key": "aqk_nosuch.key"}, headers={"Origin": "http://testserver"}),
        client.get("/login", params={"key": "aqk_nosuch.key"}, headers={"Sec-Fetch-Site": "none"}),
    ]
    for response in answers:
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert '<form method="post" action="/login">' in response.text


def test_a_valid_key_without_a_page_role_is_forbidden_and_can_sign_out(desk) -> None:
    """A billing key was a 401 "This key may not see meters." where the API answers it 403; and the
    page had no way out of the key, which stays in the cookie."""
    client, _, conn = desk
    billing = create_api_key(conn, "billing office", ["billing"])
    client.cookies.set(SESSION_COOKIE, billing)
    page = client.get("/")
    assert page.status_code == 403 and "www-authenticate" not in page.headers
    assert client.get("/meters").status_code == 403  # as the API says
    assert "This key (billing) may not see meters" in page.text and "billing office" in page.text
    assert '<form class="who" method="post" action="/logout">' in page.text
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    signed_out = client.post("/logout", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert signed_out.status_code == 303 and signed_out.headers["set-cookie"].startswith(f'{SESSION_COOKIE}=""')


def test_the_sign_in_address_without_a_key_is_the_sign_in_form(desk) -> None:
    client, _, _ = desk
    response = client.get("/login")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/login">' in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://evil.example", "Referer": "http://evil.example/page"},
        {"Origin": "http://testserver:8000"},  # another port is another origin
        {"Origin": "https://testserver"},  # and another scheme
        {"Origin": "null"},  # a sandboxed frame's form
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-site"},
        {"Referer": "http://evil.example/page"},
        {"Referer": "http://testserver.evil.example/"},
    ],
)
def test_another_site_s_form_is_refused_where_the_browser_sends_no_sec_fetch_site(desk, headers) -> None:
    """Browsers send Sec-Fetch-Site only to https and localhost: a cross-site form POST to
    http://<LAN host>:8000/login with only Origin set signed staff in under another's key (303 and
    the cookie), and a cross-site POST /logout signed them out."""
    client, key, _ = desk
    posted = client.post("/login", data={"key": key}, headers=headers, follow_redirects=False)
    assert posted.status_code == 403 and SESSION_COOKIE not in posted.headers.get("set-cookie", "")
    client.cookies.set(SESSION_COOKIE, key)
    signed_out = client.post("/logout", headers=headers, follow_redirects=False)
    assert signed_out.status_code == 303 and SESSION_COOKIE not in signed_out.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a client that is no browser
        {"Origin": "http://testserver"},
        {"Origin": "HTTP://TestServer:80", "Referer": "http://testserver/login"},
        {"Referer": "http://testserver/login?x=1"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_the_server_s_own_sign_in_form_still_signs_in_and_out(desk, headers) -> None:
    client, key, _ = desk
    posted = client.post("/login", data={"key": key}, headers=headers, follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["set-cookie"].startswith(f"{SESSION_COOKIE}={SESSION_PREFIX}")
    signed_out = client.post("/logout", headers=headers, follow_redirects=False)
    assert signed_out.status_code == 303 and signed_out.headers["set-cookie"].startswith(f'{SESSION_COOKIE}=""')


@pytest.mark.parametrize(
    "headers",
    [
        {},  # plain HTTP to a LAN host: no Sec-Fetch-Site, and a page with "no-referrer" sends no Referer
        {"Referer": "http://evil.example/"},
        {"Sec-Fetch-Site": "same-site", "Referer": "http://testserver:9999/"},  # another port on the host
        {"Sec-Fetch-Site": "same-site", "Referer": "http://wiki.testserver/"},  # a sibling subdomain
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_sign_in_link_not_opened_directly_asks_before_signing_in(desk, headers) -> None:
    """Login CSRF through the link: with no Sec-Fetch-Site and no Referer, or "same-site" from another
    origin of the host, it set the cookie, replacing the desk's own key with another's. Now it asks
    "Sign in as <name>?", and only the answer, the server's own form, signs in."""
    client, _, conn = desk
    key = create_api_key(conn, "<b>intruder</b> & co", ["customer_care"])
    linked = client.get("/login", params={"key": key}, headers=headers, follow_redirects=False)
    assert linked.status_code == 200 and SESSION_COOKIE not in linked.headers.get("set-cookie", "")
    assert "Sign in as &lt;b&gt;intruder&lt;/b&gt; &amp; co?" in linked.text and "<b>intruder" not in linked.text
    form = re.search(
        r'<form method="post" action="/login">\s*<input name="key" type="hidden" value="([^"]+)"', linked.text
    )
    assert form is not None and form[1] == key, linked.text
    answered = client.post(
        "/login", data={"key": form[1]}, headers={"Origin": "http://testserver"}, follow_redirects=False
    )
    cookie = answered.headers["set-cookie"]
    assert answered.status_code == 303 and cookie.startswith(f"{SESSION_COOKIE}={SESSION_PREFIX}")
    assert key.split(".", 1)[1] not in answered.headers["set-cookie"]


@pytest.mark.parametrize("fetch_site", ["none", "same-origin"])  # typed or pasted; a link on the server's own page
def test_a_sign_in_link_opened_directly_signs_in(desk, fetch_site) -> None:
    client, key, _ = desk
    opened = client.get("/login", params={"key": key}, headers={"Sec-Fetch-Site": fetch_site}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    assert opened.headers["set-cookie"].startswith(f"{SESSION_COOKIE}={SESSION_PREFIX}")
    assert key.split(".", 1)[1] not in opened.headers["set-cookie"]


@pytest.mark.parametrize("headers", [{}, {"Sec-Fetch-Site": "none"}, {"Sec-Fetch-Site": "cross-site"}])
def test_a_sign_in_link_with_a_revoked_or_unknown_key_says_so(desk, headers) -> None:
    client, key, conn = desk
    conn.execute("UPDATE api_keys SET revoked_at = now()")
    for link_key in (key, "aqk_nosuch.key"):
        linked = client.get("/login", params={"key": link_key}, headers=headers, follow_redirects=False)
        assert linked.status_code == 401 and "That key is not valid." in linked.text
        assert SESSION_COOKIE not in linked.headers.get("set-cookie", "") and link_key not in linked.text


def test_a_sign_in_with_a_key_not_known_is_refused_alike_whatever_is_wrong_with_it(desk, monkeypatch) -> None:
    """An id no key has, a known id with another secret, a revoked key: the same 401 page, no cookie,
    and the same work, its secret hashed and compared once, so that the answer's words and time do
    not say whether the id exists (before, an unknown id was refused without hashing: 3 µs sooner,
    benchmarks/bench_key_check.py)."""
    client, key, conn = desk
    revoked = create_api_key(conn, "gone", ["customer_care"])
    conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'gone'")
    key_id, _, secret = key.partition(".")
    not_known = {"unknown id": f"aqk_000000000000.{secret}", "other secret": f"{key_id}.{'x' * 43}", "revoked": revoked}
    hashed: list[str] = []
    real_hash = auth._hash

    def counted_hash(text: str) -> str:
        hashed.append(text)
        return real_hash(text)

    monkeypatch.setattr(auth, "_hash", counted_hash)
    pages = {}
    opened = {"Sec-Fetch-Site": "none"}
    for what, link_key in not_known.items():
        hashed.clear()
        page = client.get("/login", params={"key": link_key}, headers=opened, follow_redirects=False)
        assert page.status_code == 401 and "set-cookie" not in page.headers, what
        assert len(hashed) == 1, f"{what}: its secret hashed {len(hashed)} times"
        pages[what] = page.text
    assert len(set(pages.values())) == 1, pages
    assert "That key is not valid." in pages["unknown id"] and key_id[4:] not in pages["unknown id"]
    hashed.clear()
    signed_in = client.get("/login", params={"key": key}, headers=opened, follow_redirects=False)
    # the key's secret hashed once, as a refused one's; then the new session's secret, stored hashed
    assert signed_in.status_code == 303 and hashed[:1] == [secret] and len(hashed) == 2


def test_the_flow_column_is_litres_an_hour_to_one_decimal_and_a_small_reverse_flow_shows(desk) -> None:
    """The column wrote the meters' m³/h digits as they came: "0.0", "0.025", "-0.04" in one column.
    Now every flow is L/h to 0.1, the unit in the heading, the exact m³/h in the cell's title, and a
    reverse flow too small for the step says so rather than "0.0"."""
    client, key, conn = desk
    flows = {"F1": 0.0, "F2": 0.025, "F3": -0.04, "F4": -0.00004, "F5": 1.23456}
    for meter_id, flow in flows.items():
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter_id,))
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h) VALUES (%s, %s, 1, %s)", (meter_id, T0, flow)
        )
    page = _page(client, key)
    assert '<th class="num">Flow L/h</th>' in page and "Flow m³/h" not in page
    cells = _flow_cells(page)
    shown = {meter_id: text for meter_id, (_, text) in cells.items()}
    assert shown == {"F1": "0.0", "F2": "25.0", "F3": "-40.0", "F4": "reverse, under 0.1", "F5": "1234.6"}, cells
    assert cells["F4"][0] == "-0.00004 m³/h" and cells["F2"][0] == "0.025 m³/h"  # the exact figure, as the API's


def _flow_cells(page: str) -> dict[str, tuple[str, str]]:
    """Each meter row's flow cell: (its title, its text)."""
    rows = re.findall(
        r'<a href="/care/meters/([^"]+)">[^<]*</a>.*?<td class="num" title="([^"]+)">([^<]+)</td>', page, re.S
    )
    return {meter_id: (title, html.unescape(text)) for meter_id, title, text in rows}


def test_the_alerts_heading_says_what_it_lists_and_counts_them_always(desk) -> None:
    """It said "Open alerts" over open and ongoing ones, and counted them only beyond the 25 shown:
    3 active alerts had no count at all."""
    client, key, conn = desk
    alerts = [_alert(1, AlertKind.LEAK, 12.0), _alert(2, AlertKind.LEAK, 8.0)]
    alerts.append(replace(_alert(3, AlertKind.LOW_BATTERY, 0.0, AlertSource.METER), status=AlertStatus.ONGOING))
    save_changes(conn, AlertChanges(opened=alerts))
    heading = _page(client, key).split('<section class="alerts">')[1].split("</h2>")[0]
    assert "<h2>Active alerts, open or ongoing: 3" in heading and "Open alerts" not in heading
    assert "most urgent" not in heading  # all three are listed


def test_the_sign_in_box_has_a_label_a_screen_reader_says(desk) -> None:
    """The box had a placeholder only ("aqk_…"), which a screen reader may not say and which goes when
    typing starts."""
    client, _, _ = desk
    form = client.get("/login").text.split('<form method="post" action="/login">')[1].split("</form>")[0]
    label = re.search(r'<label for="([^"]+)">([^<]+)<input id="([^"]+)" name="key"', form)
    assert label is not None, form
    assert label[1] == label[3] and label[2].strip() == "API key"


def test_a_sign_in_lasts_a_shift_and_sign_out_ends_it(desk) -> None:
    """The cookie had no Max-Age: a care-desk PC left on stayed signed in until the browser closed, and
    for ever where the browser restores its session. Now 12 hours, whichever way one signs in."""
    client, key, _ = desk
    posted = client.post("/login", data={"key": key}, headers={"Origin": "http://testserver"}, follow_redirects=False)
    linked = client.get("/login", params={"key": key}, headers={"Sec-Fetch-Site": "none"}, follow_redirects=False)
    for signed_in in (posted, linked):
        cookie = signed_in.headers["set-cookie"]
        assert signed_in.status_code == 303 and cookie.startswith(f"{SESSION_COOKIE}={SESSION_PREFIX}")
        assert "Max-Age=43200" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/").status_code == 200  # the cookie signs the page in
    signed_out = client.post("/logout", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert signed_out.status_code == 303 and "Max-Age=0" in signed_out.headers["set-cookie"]
    assert client.get("/").status_code == 401  # the browser dropped it: signed out
