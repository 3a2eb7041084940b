"""The gateway's log line for each event it spools says the event's details, not its name alone."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import parse_config_text
from gateway.service import Gateway
from tests.gateway.helpers import config_text, running, until
from tests.services import free_port

_DETAIL = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ ]+)')

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@given(
    name=st.sampled_from(["gateway_stopped", "spool_overflow", "meter_offline", "leak"]),
    meter_id=st.none() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20),
    details=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), json_values, max_size=5),
)
def test_an_event_line_is_one_line_with_every_detail_as_json(
    name: str, meter_id: str | None, details: dict[str, Any]
) -> None:
    from gateway.service import event_line

    event: dict[str, Any] = {"gateway_id": "gw-1", "event": name, "ts": "2026-12-06T21:49:48.755Z"}
    if meter_id is not None:
        event["meter_id"] = meter_id
    details = {k: v for k, v in details.items() if k not in event and k != "meter_id"}
    event.update(details)
    line = event_line(event)
    assert "\n" not in line and "\r" not in line
    head = f"event {name}" + (f" {meter_id}" if meter_id is not None else "")
    assert line == head or line.startswith(head + ": ")
    said = line[len(head) + 2 :] if details else ""
    for key, value in details.items():
        assert f"{key}={json.dumps(value, ensure_ascii=False)}" in said
    assert "gw-1" not in said and "2026-12-06T21:49:48.755Z" not in said  # the log line has both already


@pytest.mark.services
def test_the_gateways_log_says_why_it_stopped_and_what_an_offline_meter_last_did(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, `event gateway_stopped ` and `event meter_offline WM-0001`: the reason for the stop
    (SIGTERM, or the failure that stopped it) and the spool's depth were in the event alone, which
    waits in the spool while the broker is away."""
    away = f"mqtt://127.0.0.1:{free_port()}"  # no broker: the events stay in the spool
    text = config_text(
        away,
        {"b": free_port()},  # no meter answers there
        {"b": [1]},
        str(tmp_path / "s.sqlite"),
        gateway_id="gw-log",
        extra_top="[health]\noffline_after = 1\n",
    )
    gateway = Gateway(parse_config_text(text))
    gateway.stop_reason = "SIGTERM"

    def gone_offline() -> bool:
        meter = gateway.health.meters.get("WM-0001")
        return meter is not None and meter.offline_since is not None

    async def scenario() -> None:
        async with running(gateway, drain_timeout=0.2):
            await until(gone_offline, 20)

    caplog.set_level(logging.INFO, logger="gateway.service")
    asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.service" and "event " in r.getMessage()]
    offline = [line for line in said if line.startswith("event meter_offline WM-0001: ")]
    assert len(offline) == 1, said
    assert dict(_DETAIL.findall(offline[0]))["bus"] == '"b"'
    assert dict(_DETAIL.findall(offline[0]))["consecutive_failures"] == "1"
    stopped = [line for line in said if line.startswith("event gateway_stopped")]
    assert stopped == ['event gateway_stopped: reason="SIGTERM" spool_depth=0'], said
