"""The quick start's first command: ``aquami demo`` on its embedded defaults puts readings on the API.

Runs the real command in a subprocess, as a new user would, with no database or broker URL given.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx


def _demo(*args: str, **env: str) -> subprocess.Popen[str]:
    """``aquami demo`` as a new user starts it: no database or broker of ours in its environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AQUAMI_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "aquami", "demo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean | env,
    )
    assert process.stdout is not None
    return process


def test_the_demo_on_embedded_defaults_serves_readings_and_stops_cleanly():
    # a locale forwarded over SSH that the machine has not generated: initdb refused to start in it
    process = _demo("--poll-interval", "1", "--meters", "5", LANG="de_DE.UTF-8", LC_ALL="de_DE.UTF-8")
    assert process.stdout is not None
    output: list[str] = []
    try:
        url = key = link = None
        deadline = time.monotonic() + 120
        while (url is None or key is None or link is None) and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if match := re.search(r"aquami demo is running: (http://\S+)/", line):
                url = match.group(1)
            if match := re.search(r"API key \(role admin\): (aqk_\S+)", line):
                key = match.group(1)
            if match := re.search(r"or open: (http://\S+)", line):
                link = match.group(1)
        assert url and key and link, "".join(output)
        # the printed link is a one-time one: no key in the address a browser keeps in its history
        assert link.startswith(f"{url}/login?token=") and key not in link and key.split(".")[1] not in link

        readings: list[dict] = []
        meters: list[dict] = []
        while time.monotonic() < deadline:
            response = httpx.get(f"{url}/meters", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert response.status_code == 200, response.text
            meters = response.json()["items"]
            if len(meters) == 5 and all(m["latest"] for m in meters):
                readings = httpx.get(
                    f"{url}/meters/{meters[0]['meter_id']}/readings",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=10,
                ).json()["items"]
                if len(readings) >= 2:
                    break
            time.sleep(1)
        assert len(meters) == 5 and all(m["latest"] for m in meters), meters
        assert len(readings) >= 2 and float(readings[-1]["volume_m3"]) >= float(readings[0]["volume_m3"]) > 0
        # the printed link pasted into a browser's address bar: Sec-Fetch-Site "none" (127.0.0.1 is a
        # secure context, so the browser sends it over plain HTTP too)
        page = httpx.get(link, headers={"Sec-Fetch-Site": "none"}, follow_redirects=True, timeout=10)
        assert page.status_code == 200 and meters[0]["meter_id"] in page.text
        again = httpx.get(link, headers={"Sec-Fetch-Site": "none"}, follow_redirects=True, timeout=10)
        assert again.status_code == 410 and "already been used" in again.text  # it signs in once
        # a meter's page charts its daily consumption from the history loaded at start (before, none
        # was stored until the first VEE round, an hour in): a bar for each of the last 30 days
        meter_page = httpx.get(f"{url}/care/meters/{meters[0]['meter_id']}", cookies={"aquami_key": key}, timeout=10)
        assert meter_page.status_code == 200, meter_page.text
        assert "No consumption stored yet" not in meter_page.text and '<svg class="daily"' in meter_page.text
        # Each demo meter is a household with an account, so billing has determinants to give: the
        # month so far, up to the oldest of the meters' latest reads (each has a read at or after its
        # end, without which a line is not complete), is complete; the whole month, not over yet, has
        # its closing read far from its end.
        now = datetime.now(UTC)
        so_far = f"{now:%Y-%m}-01T00:00:00Z/{min(m['latest']['ts'] for m in meters)}"
        for period, complete in ((so_far, True), (f"{now:%Y-%m}", False)):
            bills = httpx.get(
                f"{url}/billing/determinants", params={"period": period}, headers={"Authorization": f"Bearer {key}"}
            ).json()["items"]
            assert len(bills) == 5 and all(Decimal(b["consumption_m3"]) > 0 for b in bills), bills
            assert [b["complete"] for b in bills] == [complete] * 5, (period, bills)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        output.append(rest)
    assert process.returncode == 0, "".join(output)
    assert "stopped cleanly" in "".join(output)
    # the last word on the readings, once the collector has stored what the gateway sent: every one
    # polled is stored (the progress line printed as Ctrl-C came counted readings still on their way)
    tally = re.search(r"at stop: (\d+) readings polled, (\d+) stored, (\d+) left", "".join(output))
    assert tally is not None, "".join(output)
    polled, stored, left = map(int, tally.groups())
    assert polled > 0 and (stored, left) == (polled, 0), tally[0]
    # the embedded broker has no ACL: the MQTT 3.1.1 warning meant for a deployment's broker would
    # only alarm a new user (it was printed beside the banner)
    assert "acknowledged all the same" not in "".join(output)


def test_ctrl_c_while_the_demo_starts_stops_it_there():
    """A Ctrl-C while the history loaded went unheeded: every part started, the banner with its key
    was shown, and only then did the demo stop."""
    process = _demo("--meters", "40")
    assert process.stdout is not None
    output: list[str] = []
    try:
        for line in process.stdout:
            output.append(line)
            if "loading" in line:
                process.send_signal(signal.SIGINT)
                break
    finally:
        rest, _ = process.communicate(timeout=120)
        output.append(rest)
    text = "".join(output)
    assert process.returncode == 0, text
    assert "stopped while starting" in text and "stopped cleanly" in text
    assert "demo is running" not in text and "MQTT broker" not in text
