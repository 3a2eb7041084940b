"""Health: status with per-bus and per-meter figures, meter_offline/online once each, spool policies."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aquami.contracts import status as status_contract
from aquami.contracts.reads import utc_iso
from gateway.config import parse_config_text
from gateway.health import Health
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.file_size_limit import no_file_grows_past
from tests.gateway.helpers import Subscriber, config_text, meters, outage_broker, running, until
from tests.services import MosquittoBroker, free_port


def test_offline_and_online_are_raised_once_per_transition() -> None:
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    health = Health("gw", offline_after=3, clock=lambda: clock[0])
    health.track("b", ["M"])
    outcomes = [True, False, False, False, False, False, True, True, False]
    events = []
    for ok in outcomes:
        clock[0] += timedelta(seconds=60)
        events.append(health.poll_done("M", ok))
    names = [(i, e["event"]) for i, e in enumerate(events) if e is not None]
    assert names == [(3, "meter_offline"), (6, "meter_online")]
    offline = events[3]
    assert offline is not None
    assert offline["consecutive_failures"] == 3 and offline["last_good"] == "2026-01-01T00:01:00Z"
    online = events[6]
    assert online is not None and online["offline_since"] == "2026-01-01T00:04:00Z"
    snapshot = health.snapshot(spool_depth=7)
    assert snapshot["meters"]["M"] == {
        "bus": "b",
        "last_good": "2026-01-01T00:08:00Z",
        "consecutive_failures": 1,
        "offline": False,
        "last_error": None,  # the poll failed with no reason given
    }
    assert snapshot["spool_depth"] == 7


@settings(max_examples=200)
@given(
    boot=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    step=st.timedeltas(min_value=timedelta(days=-365), max_value=timedelta(days=365 * 60)),
    running_ms=st.integers(0, 10**10),
)
def test_uptime_is_the_time_run_whatever_the_wall_clock_steps(boot: datetime, step: timedelta, running_ms: int) -> None:
    """NTP stepping the wall clock (from a 1970 boot to today: 56 years; back 5 minutes: -270 s)
    moves neither uptime nor started_at, which stays the wall clock at start, for display."""
    wall = [boot]
    ticks = [1234.5]
    health = Health("gw", offline_after=3, clock=lambda: wall[0], monotonic=lambda: ticks[0])
    wall[0] += step + timedelta(milliseconds=running_ms)
    ticks[0] += running_ms / 1000
    snapshot = health.snapshot(spool_depth=0)
    assert snapshot["uptime_s"] == round(running_ms / 1000, 3)
    assert snapshot["started_at"] == utc_iso(boot)


@pytest.mark.parametrize(
    ("start", "later"),
    [
        (datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC), datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),  # NTP after boot
        (datetime(2026, 3, 1, 12, 0, tzinfo=UTC), datetime(2026, 3, 1, 11, 55, 30, tzinfo=UTC)),  # stepped back
    ],
)
def test_uptime_runs_on_the_real_monotonic_clock_by_default(start: datetime, later: datetime) -> None:
    """The wall clock as the review found it: 1772366395 s of uptime, then -270 s."""
    times = iter([start, later, later])
    health = Health("gw", offline_after=3, clock=lambda: next(times))
    time.sleep(0.02)
    assert 0.02 <= health.snapshot(spool_depth=0)["uptime_s"] < 60


@pytest.mark.services
def test_a_meter_that_stops_answering_goes_offline_once_and_comes_back(tmp_path: Path, mosquitto) -> None:
    subscriber = Subscriber(mosquitto.url, ["aquami/v1/gw-health/#"], client_id="health-sub")
    port = free_port()

    def offline_told() -> bool:
        return any(s["meters"].get("WM-0004", {}).get("offline") for s in subscriber.payloads("/status/health"))

    async def scenario() -> Gateway:
        simulator = ModbusTcpSimulator(meters(3), port=port)  # unit 4 is configured but absent
        await simulator.start()
        text = config_text(
            mosquitto.url,
            {"b": port},
            {"b": [1, 2, 3, 4]},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-health",
            # the absent unit 4 fails at once (the simulator answers "no response" for it): the timeout is for
            # the others, whose answers a loaded machine may hold past a short one (three in a row: their own
            # meter_offline, which the test rules out)
            timeout_s=2.0,
            retries=0,
            extra_top="[health]\noffline_after = 3\nstatus_interval_s = 0.5\n",
        )
        gateway = Gateway(parse_config_text(text))
        async with running(gateway):
            await asyncio.sleep(3.0)  # (the uptime asserted below)
            await asyncio.to_thread(subscriber.wait_for, offline_told, 20, "a status saying WM-0004 is offline")
            await simulator.stop()
            simulator = ModbusTcpSimulator(meters(4), port=port)  # unit 4 is back
            await simulator.start()
            await asyncio.to_thread(
                subscriber.wait_for,
                lambda: any(e["event"] == "meter_online" for e in subscriber.payloads("/events")),
                20,
                "meter_online",
            )
            await asyncio.sleep(1.0)
        await simulator.stop()
        return gateway

    try:
        gateway = asyncio.run(scenario())
        subscriber.wait_for(lambda: len(subscriber.payloads("/status/health")) >= 3, 10, "health status")
    finally:
        subscriber.close()
    events = [(e["event"], e["meter_id"]) for e in subscriber.payloads("/events") if "meter_id" in e]
    assert events.count(("meter_offline", "WM-0004")) == 1
    assert events.count(("meter_online", "WM-0004")) == 1
    assert events.index(("meter_offline", "WM-0004")) < events.index(("meter_online", "WM-0004"))
    assert all(meter_id == "WM-0004" for _, meter_id in events)  # the simulator restart was brief
    statuses = subscriber.payloads("/status/health")
    # each holds to status.schema.json: a meter with a last_error, offline, and back
    assert [status_contract.schema_errors(s) for s in statuses] == [[]] * len(statuses)
    # a gateway from before events_refused (or events_not_spooled) was counted sends none: its statuses
    # hold to the schema too
    assert all("events_refused" in s and s["events_not_spooled"] == 0 for s in statuses)
    for newer in ("events_refused", "events_not_spooled"):
        before_it = [{k: v for k, v in s.items() if k != newer} for s in statuses]
        assert [status_contract.schema_errors(s) for s in before_it] == [[]] * len(statuses)
    offline_seen = [s for s in statuses if s["meters"]["WM-0004"]["offline"]]
    assert offline_seen, "a status while the meter was away says so"
    assert offline_seen[0]["meters"]["WM-0004"]["consecutive_failures"] >= 3
    last = statuses[-1]
    assert last["gateway_id"] == "gw-health" and last["uptime_s"] > 3
    assert 0 < last["buses"]["b"]["success_rate"] < 1 and last["buses"]["b"]["attempts"] > 10
    assert last["meters"]["WM-0001"]["last_good"] is not None and "spool_depth" in last
    assert gateway.health.meters["WM-0004"].offline_since is None


def run_with_outage(tmp_path: Path, policy: str, gateway_id: str) -> tuple[Gateway, Subscriber, dict[str, int]]:
    """Poll 5 meters fast while the broker is away, with a 10-reading spool, then bring it back."""
    figures: dict[str, int] = {}
    emitted: list[str] = []

    async def scenario(broker: MosquittoBroker) -> Gateway:
        simulator = ModbusTcpSimulator(meters(5))
        await simulator.start()
        await asyncio.to_thread(broker.stop)
        text = config_text(
            broker.url,
            {"b": simulator.port},
            {"b": range(1, 6)},
            str(tmp_path / f"{policy}.sqlite"),
            gateway_id=gateway_id,
            poll_interval_s=0.1,
            extra_spool=f'max_readings = 10\npolicy = "{policy}"\n',
        )
        gateway = Gateway(parse_config_text(text))
        emit = gateway.emit

        def emitting(event: dict[str, Any]) -> None:  # what the subscriber is to receive, all of it
            emitted.append(event["event"])
            emit(event)

        gateway.emit = emitting  # type: ignore[method-assign]
        async with running(gateway):
            # the outage lasts until polling has gone on past the full spool (drop_oldest) or been
            # skipped for it (stop_polling), not a fixed 2 s a loaded machine may poll too little in
            skipped = lambda: gateway.health.buses["b"].polls_skipped if "b" in gateway.health.buses else 0  # noqa: E731
            await until(lambda: gateway.readings_spooled > 30 or skipped() > 10, 30)
            figures["spooled_in_outage"] = gateway.readings_spooled
            figures["depth_in_outage"] = gateway.spool.depth()
            figures["skipped_in_outage"] = gateway.health.buses["b"].polls_skipped
            await asyncio.to_thread(broker.start)
            await until(lambda: gateway.readings_spooled >= figures["spooled_in_outage"] + 20, 20)
        await simulator.stop()
        return gateway

    with outage_broker([f"aquami/v1/{gateway_id}/events"], f"{policy}-sub") as (broker, subscriber):
        gateway = asyncio.run(scenario(broker))
        every = lambda: subscriber.count("/events") >= max(1, len(emitted))  # noqa: E731
        subscriber.wait_for(every, 30, f"the {len(emitted)} events the gateway emitted")
    return gateway, subscriber, figures


@pytest.mark.services
def test_spool_limit_drop_oldest_raises_overflow_events(tmp_path: Path) -> None:
    gateway, subscriber, figures = run_with_outage(tmp_path, "drop_oldest", "gw-drop")
    assert figures["depth_in_outage"] == 10 and figures["spooled_in_outage"] > 30  # polling went on
    events = [e for e in subscriber.payloads("/events") if e["event"] == "spool_overflow"]
    assert events and sum(e["dropped"] for e in events) == gateway.readings_dropped  # all told, in few events
    assert len(events) <= 3
    assert gateway.readings_dropped >= figures["spooled_in_outage"] - 10
    assert all(e["policy"] == "drop_oldest" for e in events)


@pytest.mark.services
def test_spool_limit_stop_polling_skips_polls_then_resumes(tmp_path: Path) -> None:
    gateway, subscriber, figures = run_with_outage(tmp_path, "stop_polling", "gw-stop")
    assert figures["spooled_in_outage"] <= 10 + 5  # full at 10; at most one poll per meter was under way
    assert figures["skipped_in_outage"] > 10 and gateway.readings_dropped == 0
    names = [e["event"] for e in subscriber.payloads("/events")]
    assert names[:2] == ["spool_full", "spool_resumed"]
    assert gateway.readings_spooled >= figures["spooled_in_outage"] + 20  # polling resumed


@pytest.mark.services
def test_events_wait_in_the_spool_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    stopped_at: dict[str, str] = {}

    async def run_once(broker: MosquittoBroker, done: Callable[[Gateway], bool], drain: float) -> Gateway:
        text = config_text(
            broker.url,
            {"b": port},
            {"b": [1, 2]},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-ev",
            # unit 2 fails at once (the simulator answers "no response" for it): the timeout is for unit 1,
            # whose answers a loaded machine may hold past a short one (twice in a row: a meter_offline of
            # WM-0001's among the first run's events, which the test rules out)
            timeout_s=2.0,
            retries=0,
            extra_top="[health]\noffline_after = 2\n",
        )
        gateway = Gateway(parse_config_text(text))
        async with running(gateway, drain_timeout=drain):
            await until(lambda: done(gateway), 20)
        return gateway

    def offline(gateway: Gateway) -> bool:
        meter = gateway.health.meters.get("WM-0002")
        return meter is not None and meter.offline_since is not None

    async def scenario(broker: MosquittoBroker) -> int:
        simulator = ModbusTcpSimulator(meters(1), port=port)  # unit 2 never answers
        await simulator.start()
        await asyncio.to_thread(broker.stop)
        first = await run_once(broker, offline, drain=0.0)  # the broker away: the event can only wait
        stopped_at["ts"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        from gateway.spool import Spool

        spool = Spool(tmp_path / "s.sqlite")
        waiting = spool.messages_waiting()
        spool.close()
        assert first.publisher.connections == 0
        await asyncio.to_thread(broker.start)
        await run_once(broker, lambda gateway: gateway.spool.messages_waiting() == 0, drain=5.0)  # delivered
        await simulator.stop()
        return waiting

    with outage_broker(["aquami/v1/gw-ev/events"], "events-sub") as (broker, subscriber):
        waiting = asyncio.run(scenario(broker))
        subscriber.wait_for(
            lambda: any(e["ts"] < stopped_at["ts"] for e in subscriber.payloads("/events")), 10, "the first run's event"
        )
    assert waiting >= 1
    early = [e for e in subscriber.payloads("/events") if e["ts"] < stopped_at["ts"]]
    assert [(e["event"], e.get("meter_id")) for e in early] == [("meter_offline", "WM-0002"), ("gateway_stopped", None)]


def test_an_event_the_spool_cannot_take_does_not_stop_spooling(tmp_path: Path) -> None:
    """The disk refuses the spool's writes for a while (full, worn): the readings are refused, each
    poll failing with it, and the meters' ``meter_offline`` events too. Each refused event is lost
    (said, counted), not raised into the poll that raised it: once the disk takes writes again, the
    polls' readings reach the spool again, and the meters' ``meter_online`` events with them.

    The disk is real: the kernel refuses every write that would grow a file past 1 KiB (the process's
    ``RLIMIT_FSIZE``, tests/gateway/file_size_limit.py), the spool's WAL among them, as a full card
    refuses them (ENOSPC). Before, the test replaced ``Spool.add_message`` with a function raising
    "database or disk is full" while the readings went on being stored: a disk that takes readings
    and refuses events, which a real one does not (a spool short of room refuses readings first, at
    its reserve, and events after). A small tmpfs would be a full filesystem too, but mounting one
    needs root (CAP_SYS_ADMIN), which a developer's run may not have, and a killed run leaves it
    mounted; SQLite's ``max_page_count`` limits the database's pages, not its WAL, and a full
    database still takes small events into the room left on its pages (tests/gateway/test_spool.py,
    test_spool_writes_failing.py use it where that is what is tested)."""
    loop_errors: list[str] = []
    seen: dict[str, Any] = {}

    async def scenario() -> Gateway:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context["message"]))
        simulator = ModbusTcpSimulator(meters(3))
        await simulator.start()
        text = config_text(
            f"mqtt://127.0.0.1:{free_port()}",  # no broker: the events wait in the spool
            {"b": simulator.port},
            {"b": range(1, 4)},
            str(tmp_path / "s.sqlite"),
            poll_interval_s=0.1,
            retries=0,
            extra_top="[health]\noffline_after = 2\n",
        )
        gateway = Gateway(parse_config_text(text))
        try:
            async with running(gateway, drain_timeout=0.1):
                await until(lambda: gateway.readings_spooled >= 6, 20)
                with no_file_grows_past(1024):
                    await until(lambda: gateway.events_not_spooled >= 1, 20)  # a meter_offline refused
                    seen["refused"] = gateway.status()
                back = gateway.readings_spooled
                meter = gateway.health.meters
                await until(lambda: all(meter[m].offline_since is None for m in meter), 20)
                await until(lambda: gateway.readings_spooled >= back + 10, 20)
                seen["back"] = gateway.status()
                gc.collect()  # a task whose exception was never retrieved says so when it is collected
        finally:
            await simulator.stop()
        return gateway

    gateway = asyncio.run(scenario())
    refused, back = seen["refused"], seen["back"]
    assert refused["readings_not_spooled"] >= 2 and refused["events_not_spooled"] >= 1  # refused, counted
    assert back["readings_spooled"] >= refused["readings_spooled"] + 10, "polling and spooling went on"
    assert not [message for message in loop_errors if "never retrieved" in message], loop_errors
    spool = Spool(gateway.config.spool_path)  # what the disk took once it could
    try:
        events = [json.loads(payload)["event"] for _, _, payload in spool.messages_after(0, 1000)]
    finally:
        spool.close()
    assert "meter_online" in events, events


def test_a_reading_the_spool_refuses_is_a_failed_poll_in_the_meter_s_health(tmp_path: Path) -> None:
    """The meter answers, the spool refuses the reading (a full disk): the poll failed, and nothing
    said so. The poll's task died with the error ("Task exception was never retrieved", 11,799 in
    the reviewer's run) and the meter's consecutive failures, last error and offline never moved.
    Now it is a failed poll whose reason names the spool, and the gateway counts the readings lost.

    The full disk is the spool's reserve set beyond any disk (every append is refused, as on a disk
    with less room than the reserve); nothing is mounted."""
    loop_errors: list[str] = []

    async def scenario() -> dict[str, object]:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context["message"]))
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        text = config_text(
            f"mqtt://127.0.0.1:{free_port()}",  # no broker: only the spool matters here
            {"b": simulator.port},
            {"b": [1, 2]},
            str(tmp_path / "s.sqlite"),
            poll_interval_s=0.1,
            extra_top="[health]\noffline_after = 3\n",
        )
        gateway = Gateway(parse_config_text(text))
        gateway.spool.reserve_bytes = 2**62
        async with running(gateway, drain_timeout=0.1):
            meter = gateway.health.meters
            await until(lambda: "WM-0001" in meter and meter["WM-0001"].consecutive_failures >= 3, 20)
            status = gateway.status()
            gc.collect()  # a task whose exception was never retrieved says so when it is collected
        await simulator.stop()
        return status

    status = asyncio.run(scenario())
    meter = status["meters"]["WM-0001"]  # type: ignore[index]
    assert meter["consecutive_failures"] >= 3 and meter["offline"], meter
    assert meter["last_error"]["message"].startswith("spool: spool full:"), meter
    assert status["readings_spooled"] == 0 and status["readings_not_spooled"] >= 3  # type: ignore[operator]
    assert not [message for message in loop_errors if "never retrieved" in message]


def test_a_meter_s_last_error_is_its_last_failed_poll_s_reason_until_a_good_read() -> None:
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    health = Health("gw", offline_after=3, clock=lambda: clock[0])
    health.track("b", ["M"])
    assert health.snapshot(0)["meters"]["M"]["last_error"] is None
    for error in ("M: no answer", "M: b: cannot open /dev/ttyUSB0"):
        clock[0] += timedelta(seconds=60)
        health.poll_done("M", False, error=error)
    assert health.snapshot(0)["meters"]["M"]["last_error"] == {
        "ts": "2026-01-01T00:02:00Z",
        "message": "M: b: cannot open /dev/ttyUSB0",
    }
    health.poll_done("M", True)
    assert health.snapshot(0)["meters"]["M"]["last_error"] is None


def test_an_unplugged_adapter_is_named_in_the_warning_and_in_health(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A USB serial adapter unplugged: the poll's warning said "no answer after 2 attempts" and the
    reason (the port cannot be opened) was logged only at DEBUG. Now the warning carries the last
    attempt's error, and health each meter's last error, until a good read clears it."""
    from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
    from tests.gateway.helpers import bus_config_text
    from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves

    link = tmp_path / "ttyUSB-by-id"  # a stable path, as udev's /dev/serial/by-id/...: nothing behind it yet
    bus = {"name": "bus-1", "protocol": "mbus", "device": str(link), "baudrate": 9600}
    bus |= {"parity": "E" if pty_accepts_parity() else "N", "retries": 1, "poll_interval_s": 0.5}
    # a wide answer window (the default is 84 ms at 9600 baud): once plugged in, a late answer on a
    # loaded machine would be a warning without "cannot open", which the test rules out
    bus["answer_timeout_s"] = 1.0
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        bus,
        [{"meter_id": "HOUSE-1", "address": 1}],
        gateway_id="gw-unplugged",
    )
    line = SerialLine(MBusSlaves([MBusSlave(1, "11110001", 100.0)]), LineSettings(baudrate=9600, parity="E"))
    seen: dict[str, object] = {}

    async def scenario() -> None:
        gateway = Gateway(parse_config_text(text))
        async with running(gateway, drain_timeout=0.1):
            await until(lambda: "HOUSE-1" in gateway.health.meters, 20)
            await until(lambda: gateway.health.meters["HOUSE-1"].failed_polls >= 1, 20)
            seen["unplugged"] = gateway.status()["meters"]["HOUSE-1"]["last_error"]
            link.symlink_to(line.start().port)
            await until(lambda: gateway.health.meters["HOUSE-1"].last_good is not None, 20)
            seen["plugged"] = gateway.status()["meters"]["HOUSE-1"]["last_error"]

    caplog.set_level("WARNING", logger="gateway.scheduler")
    try:
        asyncio.run(scenario())
    finally:
        line.stop()
    unplugged = seen["unplugged"]
    assert isinstance(unplugged, dict) and f"cannot open {link}" in unplugged["message"], unplugged
    assert seen["plugged"] is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.scheduler"]
    assert warnings and all(f"cannot open {link}" in w for w in warnings), warnings
    assert warnings[0].startswith("HOUSE-1 on bus-1: failed after 2 attempts, the last: "), warnings


@pytest.mark.services
def test_a_stopped_gateway_s_retained_health_says_offline_as_its_status_does(tmp_path: Path, mosquitto) -> None:
    """The retained status/health said "state": "online" for good after a clean stop."""
    port = free_port()

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(2), port=port)
        await simulator.start()
        text = config_text(
            mosquitto.url,
            {"b": port},
            {"b": [1, 2]},
            str(tmp_path / "s.sqlite"),
            gateway_id="gw-stops",
            extra_top="[health]\nstatus_interval_s = 0.5\n",
        )
        try:
            async with running(Gateway(parse_config_text(text))):
                await asyncio.sleep(1.5)
        finally:
            await simulator.stop()

    asyncio.run(scenario())
    late = Subscriber(mosquitto.url, ["aquami/v1/gw-stops/#"], client_id="late-sub")  # sees what is retained
    try:
        retained = lambda: bool(late.payloads("/status/health") and late.payloads("/status"))  # noqa: E731
        late.wait_for(retained, 10, "the retained status")
        (health,) = late.payloads("/status/health")
        assert late.payloads("/status") == ["offline"]
        assert health["state"] == "offline" and health["gateway_id"] == "gw-stops"
        assert health["meters"]["WM-0001"]["last_good"] is not None
    finally:
        late.close()


@pytest.mark.services
def test_a_gateway_stopped_with_the_broker_away_says_when_and_why_after_its_next_start(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """The last status and health at a stop go from memory: with the broker away as the gateway
    stopped they were dropped, and nothing told the head-end that the gateway had stopped, when, or
    why (its retained health said "online"). The gateway_stopped event waits in the spool and goes
    after the next start, dated when the gateway stopped."""
    gw, spool = "gw-stopped-away", str(tmp_path / "s.sqlite")
    away = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    events = Subscriber(mosquitto.url, [f"aquami/v1/{gw}/events"], client_id="stopped-away-sub")

    def gateway(url: str) -> Gateway:
        return Gateway(parse_config_text(config_text(url, {"b": free_port()}, {"b": [1]}, spool, gateway_id=gw)))

    async def run_once(url: str, reason: str | None) -> None:
        g = gateway(url)
        g.stop_reason = reason
        async with running(g, drain_timeout=0.2 if url == away else 10.0):
            await until(lambda: g.publisher.connected.is_set() or url == away, 30)

    def stopped() -> list[dict[str, Any]]:
        return [e for e in events.payloads("/events") if e["event"] == "gateway_stopped"]

    try:
        before = datetime.now(UTC)
        asyncio.run(run_once(away, "SIGTERM"))
        after = datetime.now(UTC)
        asyncio.run(run_once(mosquitto.url, None))  # drains the spool, then stops with the broker there
        events.wait_for(lambda: len(stopped()) >= 2, 30, "both gateway_stopped events")
        first, second = stopped()
        assert first["reason"] == "SIGTERM" and before <= datetime.fromisoformat(first["ts"]) <= after
        assert second["reason"] == "stopped" and datetime.fromisoformat(second["ts"]) > after
        assert first["gateway_id"] == second["gateway_id"] == gw
    finally:
        events.close()


def test_aquami_gateway_run_stopped_by_sigterm_spools_gateway_stopped_naming_it(tmp_path: Path) -> None:
    """The command's signal handler gives the reason: a supervisor's stop (SIGTERM) is told from a
    person's Ctrl-C (SIGINT) and from a failure, in the event the head-end receives."""
    import signal
    import subprocess

    from gateway.spool import Spool
    from tests.gateway.test_spool_lock import AQUAMI, _has_opened, _wait

    spool, config = tmp_path / "s.sqlite", tmp_path / "gw.toml"
    config.write_text(config_text(f"mqtt://127.0.0.1:{free_port()}", {"b": free_port()}, {"b": [1]}, str(spool)))
    run = [AQUAMI, "gateway", "run", str(config)]
    gateway = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: _has_opened(spool) or gateway.poll() is not None), "the gateway opened its spool"
        assert gateway.poll() is None, "the gateway runs"
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(60) == 0
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    kept = Spool(spool)
    try:
        events = [json.loads(payload) for _, _, payload in kept.messages_after(0, 100)]
    finally:
        kept.close()
    (stopped,) = [e for e in events if e["event"] == "gateway_stopped"]
    assert stopped["reason"] == "SIGTERM" and stopped["gateway_id"] == "gw-test"
