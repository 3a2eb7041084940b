"""An event holding a value JSON cannot write never breaks the poll, bus or spool writer that raised it:
the event is said in the log (its ``event …`` line, the value by its ``repr``), said lost once an
episode, and counted in the health status's ``events_not_spooled``. A ``Decimal`` or an aware
``datetime`` has a spelling, and such an event is stored.

Before, :meth:`gateway.service.Gateway.emit` made the event's log line before its ``try``: the
``TypeError`` went up into whatever raised the event. A poll's task died with it ("Task exception was
never retrieved"), and a ``spool_overflow`` killed the spool's writer, after which no reading was
stored at all, each poll waiting for good on a commit that never came.

No event the gateway makes today holds such a value (every field is a string, an integer or null:
gateway.health, gateway.service); the health here adds one to the events it raises, the rest is real
(a simulated Modbus TCP meter, the scheduler, the spool's writer, SQLite)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.reads import utc_iso
from aquami.contracts.status import schema_errors as status_errors
from gateway.config import parse_config_text
from gateway.event_json import PLAIN_PLACES_MAX, EventNotJson, event_json
from gateway.health import Health
from gateway.service import Gateway, event_line
from gateway.spool import Spool
from gateway.unwritable_events import UnwritableEvents
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import config_text, meters, running, until
from tests.services import free_port

FRAME = bytes.fromhex("6808086808fd5b00")  # the head of an M-Bus long frame: bytes, which JSON has no form for


class ExtraInEvents(Health):
    """The gateway's health, its events (a meter's, and the gateway's own if ``gateway_events``)
    carrying ``extra`` too: as a field a later event might carry (a decoded frame's bytes, a volume)."""

    def __init__(self, gateway: Gateway, extra: dict[str, Any], gateway_events: bool = False) -> None:
        config = gateway.config
        super().__init__(config.gateway_id, config.health.offline_after, gateway.clock, store=gateway.spool)
        self.extra = extra
        self.gateway_events = gateway_events

    def poll_done(
        self, meter_id: str, ok: bool, at: datetime | None = None, error: str | None = None
    ) -> dict[str, Any] | None:
        event = super().poll_done(meter_id, ok, at, error)
        return None if event is None else {**event, **self.extra}

    def gateway_event(self, name: str, **detail: Any) -> dict[str, Any]:
        event = super().gateway_event(name, **detail)
        return {**event, **self.extra} if self.gateway_events else event


# codec -------------------------------------------------------------------------------------------------
plain = st.none() | st.booleans() | st.integers() | st.text()
decimals = st.decimals(allow_nan=False, allow_infinity=False)
aware = st.datetimes(timezones=st.timezones(), min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1))


field_names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(
    lambda k: k not in ("gateway_id", "event", "ts", "meter_id")
)


@given(details=st.dictionaries(field_names, plain | decimals | aware, max_size=6))
def test_a_decimal_is_its_digits_and_a_datetime_utc_iso_in_the_stored_event(details: dict[str, Any]) -> None:
    event = {"gateway_id": "gw-1", "event": "meter_online", "ts": "2026-12-07T10:00:00Z", **details}
    stored = json.loads(event_json(event))
    for key, value in details.items():
        if isinstance(value, Decimal):
            assert isinstance(stored[key], str) and Decimal(stored[key]) == value  # exact, no float's rounding
        elif isinstance(value, datetime):
            assert stored[key] == utc_iso(value)  # the same instant, whatever its zone (a fold's too)
            assert datetime.fromisoformat(stored[key]).timestamp() == value.timestamp()
        else:
            assert stored[key] == value
    line = event_line(event)
    for key in details:  # its log line says each as stored
        assert f"{key}={json.dumps(stored[key], ensure_ascii=False)}" in line


#: Finite Decimals of any exponent: hypothesis's own, and any digits at any exponent either side of the
#: refused beyond (gateway.event_json.PLAIN_PLACES_MAX), zeros and negative zeros among them.
any_exponent = decimals | st.builds(
    lambda sign, digits, exponent: Decimal((sign, tuple(digits), exponent)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=30),
    st.integers(-PLAIN_PLACES_MAX - 40, PLAIN_PLACES_MAX + 10),
)


@given(value=any_exponent)
def test_a_decimal_is_written_in_plain_digits_that_read_back_as_the_same_number(value: Decimal) -> None:
    """``Decimal("1E+2")`` was written ``"1E+2"``: a utility's tools read plain digits (``"100"``)."""
    event = {"gateway_id": "gw-1", "event": "meter_online", "ts": "2026-12-07T10:00:00Z", "volume_m3": value}
    if abs(value.adjusted()) > PLAIN_PLACES_MAX:  # its plain digits longer than any meter's or bill's value
        with pytest.raises(EventNotJson, match=r"^event meter_online: field volume_m3=.* plain digits"):
            event_json(event)
        return
    written = json.loads(event_json(event))["volume_m3"]
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", written), written  # no exponent, nothing but digits
    assert Decimal(written) == value and Decimal(written).is_signed() == value.is_signed()


def test_a_decimal_with_an_exponent_is_written_as_the_digits_it_stands_for() -> None:
    event = {"gateway_id": "gw-1", "event": "meter_online", "ts": "2026-12-07T10:00:00Z"}
    values = {"a": Decimal("1E+2"), "b": Decimal("1.50"), "c": Decimal("1.2E-5"), "d": Decimal("-0E+3")}
    assert json.loads(event_json({**event, **values})) == {
        **event,
        **{"a": "100", "b": "1.50", "c": "0.000012", "d": "-0"},
    }


unwritable = st.one_of(
    st.binary(max_size=8),
    st.sets(st.integers(), max_size=3),
    st.just(datetime(2026, 12, 7, 10, 0)),  # naive: never UTC by accident
    st.sampled_from([math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("Infinity")]),
    st.builds(object),
)


@given(value=unwritable, nested=st.booleans())
def test_an_event_with_a_value_json_cannot_write_is_refused_naming_its_field(value: object, nested: bool) -> None:
    event = {"gateway_id": "gw-1", "event": "meter_offline", "meter_id": "WM-1", "volume": 1, "frame": value}
    if nested:
        event["frame"] = {"records": [value]}
    with pytest.raises(EventNotJson) as refused:
        event_json(event)
    assert str(refused.value).startswith("event meter_offline: field frame=")
    line = event_line(event)  # the log still says it, whatever it holds
    assert line.startswith("event meter_offline WM-1: volume=1 frame=") and "\n" not in line


# through a real poll ----------------------------------------------------------------------------------
def test_a_meter_event_json_cannot_write_leaves_the_polls_going_said_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unit 3 is absent (the simulator answers "no response"): its first failed poll raises its
    ``meter_offline``, holding a frame's bytes. The poll ends as a failed one, the other meters'
    readings go on reaching the spool, the meter's offline state is stored, the event is in the log."""
    loop_errors: list[str] = []
    seen: dict[str, Any] = {}

    async def scenario() -> Gateway:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context["message"]))
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        text = config_text(
            f"mqtt://127.0.0.1:{free_port()}",  # no broker: only the spool matters here
            {"b": simulator.port},
            {"b": [1, 2, 3]},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-frame",
            poll_interval_s=0.1,
            retries=0,
            extra_top="[health]\noffline_after = 1\n",
        )
        gateway = Gateway(parse_config_text(text))
        gateway.health = ExtraInEvents(gateway, {"frame": FRAME})
        try:
            async with running(gateway, drain_timeout=0.1):
                meter = gateway.health.meters
                await until(lambda: "WM-0003" in meter and meter["WM-0003"].offline_since is not None, 20)
                seen["at_event"] = gateway.readings_spooled
                await until(lambda: gateway.readings_spooled >= seen["at_event"] + 10, 20)
                seen["status"] = gateway.status()
                gc.collect()  # a task whose exception was never retrieved says so when it is collected
        finally:
            await simulator.stop()
        return gateway

    with caplog.at_level(logging.INFO, logger="gateway.service"):
        asyncio.run(scenario())
    status = seen["status"]
    assert not [message for message in loop_errors if "never retrieved" in message], loop_errors
    assert status["readings_spooled"] >= seen["at_event"] + 10  # the other meters' polls went on
    assert status["meters"]["WM-0003"]["offline"] and status["events_not_spooled"] == 1
    assert status_errors(status) == []
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.service"]
    offline = [m for level, m in said if level == logging.INFO and m.startswith("event meter_offline WM-0003: ")]
    assert offline == [f'event meter_offline WM-0003: bus="b" consecutive_failures=1 last_good=null frame={FRAME!r}']
    errors = [m for level, m in said if level == logging.ERROR]
    assert errors == [
        f"event meter_offline cannot be written as JSON: field frame={FRAME!r}: bytes has no JSON form; such an "
        "event is in this log alone (its `event …` line), not sent to the broker, and counted in events_not_spooled; "
        "polling goes on (said again every 1 h while meter_offline events fail so, and once they are written again)"
    ]
    assert not [r for r in caplog.records if r.exc_info], "a bad event's line says it all: no traceback"
    events = [json.loads(p)["event"] for _, _, p in _spooled_events(tmp_path / "s.sqlite")]
    assert "meter_offline" not in events and events[-1] == "gateway_stopped"  # the stop's event, stored after it
    stored = _stored_health(tmp_path / "s.sqlite", "WM-0003")  # its offline state kept, stored at the stop
    assert stored is not None and stored[1] is not None and stored[2] >= 1


def test_a_spool_overflow_event_json_cannot_write_leaves_the_spool_s_writer_storing(tmp_path: Path) -> None:
    """The spool holds 10 readings (``drop_oldest``): its writer drops the oldest and raises the
    ``spool_overflow`` event, holding a frame's bytes. Before, the writer died with it: every reading
    after was lost, each poll waiting for good on a commit that never came."""
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(5))
        await simulator.start()
        text = config_text(
            f"mqtt://127.0.0.1:{free_port()}",  # no broker: the spool fills, the oldest are dropped
            {"b": simulator.port},
            {"b": range(1, 6)},
            str(tmp_path / "s.sqlite"),
            poll_interval_s=0.1,
            extra_spool="max_readings = 10\n",
        )
        gateway = Gateway(parse_config_text(text))
        gateway.health = ExtraInEvents(gateway, {"frame": FRAME}, gateway_events=True)
        try:
            async with running(gateway, drain_timeout=0.1):
                await until(lambda: gateway.readings_dropped > 0, 20)  # a spool_overflow event was due
                seen["at_overflow"] = gateway.readings_spooled
                await until(lambda: gateway.readings_spooled >= seen["at_overflow"] + 20, 20)
                seen["status"] = gateway.status()
        finally:
            await simulator.stop()

    asyncio.run(scenario())
    status = seen["status"]
    assert seen["at_overflow"] > 0
    assert status["readings_spooled"] >= seen["at_overflow"] + 20, "the readings after the event were stored"
    assert status["events_not_spooled"] >= 1 and status["spool_depth"] == 10


def test_a_decimal_in_a_meter_event_is_stored_as_its_digits(tmp_path: Path) -> None:
    """A value the gateway's types give (a volume as a ``Decimal``) is written, not lost."""
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(1))
        await simulator.start()
        text = config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            {"b": simulator.port},
            {"b": [1, 2]},
            str(tmp_path / "s.sqlite"),
            poll_interval_s=0.1,
            retries=0,
            extra_top="[health]\noffline_after = 1\n",
        )
        gateway = Gateway(parse_config_text(text))
        gateway.health = ExtraInEvents(
            gateway, {"volume_m3": Decimal("12.340"), "seen_at": datetime(2026, 12, 7, tzinfo=UTC)}
        )
        try:
            async with running(gateway, drain_timeout=0.1):
                meter = gateway.health.meters
                await until(lambda: "WM-0002" in meter and meter["WM-0002"].offline_since is not None, 20)
                seen["status"] = gateway.status()
        finally:
            await simulator.stop()

    asyncio.run(scenario())
    events = [json.loads(p) for _, _, p in _spooled_events(tmp_path / "s.sqlite")]
    offline = [e for e in events if e["event"] == "meter_offline"]
    assert len(offline) == 1 and offline[0]["meter_id"] == "WM-0002"
    assert offline[0]["volume_m3"] == "12.340" and offline[0]["seen_at"] == "2026-12-07T00:00:00Z"
    assert seen["status"]["events_not_spooled"] == 0


def _spooled_events(path: Path) -> list[tuple[int, str, bytes]]:
    spool = Spool(path)
    try:
        return spool.messages_after(0, 1000)
    finally:
        spool.close()


def _stored_health(path: Path, meter_id: str) -> tuple[str | None, str | None, int] | None:
    spool = Spool(path)
    try:
        return spool.load_meter_health(meter_id)
    finally:
        spool.close()


def test_a_kind_of_event_that_cannot_be_written_is_reminded_hourly_and_ended_once_written_for_an_hour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A kind that fails for some of its events and not others (a field only some meters fill) is one
    episode: an event of it written does not end it until they have been written for an hour, so the
    log is not an ERROR and an INFO line at each of its events."""
    now = [1000.0]
    said = UnwritableEvents(logging.getLogger("test.unwritable"), remind_every_s=3600, monotonic=lambda: now[0])
    refused = EventNotJson("meter_offline", f"field frame={FRAME!r}: bytes has no JSON form")
    with caplog.at_level(logging.INFO, logger="test.unwritable"):
        for _ in range(3):  # failing, written, failing…: one episode
            said.failed(refused)
            now[0] += 60
            said.written("meter_offline")
            now[0] += 60
        now[0] += 3600
        said.failed(refused)  # an hour on: a reminder
        now[0] += 60
        said.written("meter_offline")
        now[0] += 3600
        said.written("meter_offline")  # written for an hour: its end
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [logging.ERROR, logging.ERROR, logging.INFO]
    assert lines[0][1].startswith(f"event meter_offline cannot be written as JSON: field frame={FRAME!r}: ")
    assert re.fullmatch(
        r"meter_offline events still cannot be written as JSON, 4 failed since \S+Z, the last: "
        + re.escape(f"field frame={FRAME!r}: bytes has no JSON form"),
        lines[1][1],
    ), lines[1][1]
    assert lines[2][1] == "meter_offline events written as JSON again after 1 h 7 min, 4 could not be"
    assert not [r for r in caplog.records if r.exc_info]
