"""A wired M-Bus meter polled at a primary address is known by the identification its answers carry:
an answer from another meter at that address (a meter exchanged, two meters' addresses swapped) is
refused for that poll with words saying which answered, which was expected, where, and what to do
(gateway.mbus_identity). Before, the other meter's register was stored as this meter's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.config.reader import ConfigError
from aquami.contracts.reads import Reading
from gateway.config import MBusBusConfig, MeterConfig, parse_config_text
from gateway.mbus import MBusTransport
from gateway.mbus_identity import IdentificationMismatch, check_identification, expected_identification
from gateway.meter_identity import MeterIdentities
from gateway.scheduler import BusScheduler
from gateway.spool import Spool
from gateway.transport import PollError
from simulators.mbus_bus import MBusSimulator, mbus_line
from simulators.mbus_slave import MBusWaterMeter
from simulators.meter_model import MeterModel
from simulators.serial_line import pty_accepts_parity
from tests.gateway.helpers import bus_config_text, exchanged_across
from tests.services import free_port

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
INSTALLED = datetime(2026, 5, 20, tzinfo=UTC)
NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)
WINDOW_S = 0.5  # the answer window: the simulator answers from a thread of this process, on a loaded machine


def _water_meter(identification: str, primary: int, initial_m3: float) -> MBusWaterMeter:
    model = MeterModel(f"MB{identification}", installed=INSTALLED, seed=int(identification[-1]), initial_m3=initial_m3)
    model.read(NOW)  # its days worked out before the gateway's answer windows start
    return MBusWaterMeter(model, primary, identification)


def _bus(device: str, *meters: MeterConfig) -> MBusBusConfig:
    return MBusBusConfig("mbus-1", device, meters, baudrate=9600, parity=PARITY, answer_timeout_s=WINDOW_S, retries=0)


#: a step of :meth:`Polls.run`: a meter polled (its id), a pause (seconds), or something done meanwhile
Step = str | float | Callable[[], object]


class Polls:
    """A bus's scheduler over a real transport: each poll's reading or error, and what was spooled."""

    def __init__(self, bus: MBusBusConfig, identities: MeterIdentities | None = None) -> None:
        self.spooled: list[Reading] = []
        self.late: list[int | None] = []
        self.transport = MBusTransport(bus, on_late=self.late.append, identities=identities)
        self.scheduler = BusScheduler(bus, self.transport, on_reading=self._spool)

    async def _spool(self, reading: Reading) -> None:
        self.spooled.append(reading)

    def run(self, *steps: Step) -> list[tuple[Reading | None, str | None]]:
        """Each step in turn, then the transport closed: each poll's reading, or None and its error."""

        async def polls() -> list[tuple[Reading | None, str | None]]:
            results = []
            try:
                for step in steps:
                    if isinstance(step, str):
                        results.append((await self.scheduler.read_now(step))[:2])
                    elif isinstance(step, float):
                        await asyncio.sleep(step)
                    else:
                        step()
                return results
            finally:
                await self.transport.close()

        return asyncio.run(asyncio.wait_for(polls(), 60))


def _scheduler_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.scheduler" and r.levelno >= logging.WARNING]


def test_two_meters_whose_primary_addresses_were_swapped_are_refused_not_read_as_each_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FLAT-5 has its identification in the configuration, FLAT-6 not (its first answer's is kept).
    Once a technician has swapped their addresses, each poll gets the other meter's answer: before,
    FLAT-5 was stored with FLAT-6's 300 m3 and FLAT-6 with FLAT-5's 1234 m3."""
    five, six = _water_meter("11111111", 5, 1234.0), _water_meter("22222222", 6, 300.0)
    with MBusSimulator([five, six], mbus_line(9600), clock=lambda: NOW) as sim:
        bus = _bus(
            sim.port, MeterConfig("FLAT-5", 5, "mbus", identification="11111111"), MeterConfig("FLAT-6", 6, "mbus")
        )
        polls = Polls(bus)
        with caplog.at_level(logging.WARNING):
            swap = partial(sim.swap_primary_addresses, "11111111", "22222222")
            results = polls.run("FLAT-5", "FLAT-6", swap, "FLAT-5", "FLAT-6", "FLAT-5", "FLAT-6")
    before, after = results[:2], results[2:]
    assert [reading is not None for reading, _ in before] == [True, True], before
    # each its own register, and nothing spooled after the swap
    assert [r.volume_m3 for r in polls.spooled] == pytest.approx([m.meter.volume_m3(NOW) for m in (five, six)])
    assert [reading for reading, _ in after] == [None] * 4
    five_error, six_error = after[0][1], after[1][1]
    assert five_error == (
        "FLAT-5: at primary address 5 the meter with identification 22222222 answered, not 11111111, the "
        "identification this meter is configured with (22222222 is FLAT-6's, at primary address 6): its reading is "
        "not taken. A meter exchanged, or addresses set anew by a technician? `aquami gateway scan` lists the bus's "
        "meters by identification; then set this meter's address to where 11111111 answers, or, for a new meter, "
        'identification = "22222222", and reload'
    )
    assert six_error is not None and six_error.startswith(
        "FLAT-6: at primary address 6 the meter with identification 11111111 answered, not 22222222, the "
        "identification of this meter's first answer, at "
    )
    assert six_error.endswith(
        "(11111111 is FLAT-5's, at primary address 5): its reading is not taken. A meter exchanged, or addresses set "
        "anew by a technician? `aquami gateway scan` lists the bus's meters by identification; once the meter at "
        'primary address 6 is checked, pin it: identification = "11111111" in this meter\'s configuration (or set '
        "its address to where its own meter answers), and reload"
    )
    assert after[2][1] == five_error and after[3][1] == six_error
    # once an episode, as any failing poll: each meter's first failure said, the second not
    warnings = _scheduler_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "FLAT-5 on mbus-1: failed after 1 attempt, the last: " + five_error in warnings[0]
    assert "FLAT-6 on mbus-1: failed after 1 attempt, the last: " + six_error in warnings[1]


def test_a_meter_exchanged_at_its_primary_address_is_refused_until_its_identification_is_pinned() -> None:
    """The old meter (1234 m3) taken off the bus and a new one (from 0 m3) put at its address: before,
    the new one's register was stored as the old meter's next reading, a step back of some 1200 m3. Refused, then
    taken once the configuration gives the new meter's identification, as the error says to."""
    old = _water_meter("11111111", 5, 1234.0)
    with MBusSimulator([old], mbus_line(9600), clock=lambda: NOW) as sim:
        unpinned = MeterConfig("FLAT-5", 5, "mbus")
        polls = Polls(_bus(sim.port, unpinned))
        identities = polls.transport.identities
        first = polls.run("FLAT-5")
        new = _water_meter("33333333", 0, 0.0)
        sim.exchange("11111111", new)
        refused = Polls(_bus(sim.port, unpinned), identities).run("FLAT-5", "FLAT-5")
        pinned = replace(unpinned, identification="33333333")
        taken = Polls(_bus(sim.port, pinned), identities).run("FLAT-5")
    assert first[0][0] is not None and first[0][0].volume_m3 == pytest.approx(old.meter.volume_m3(NOW))
    assert [reading for reading, _ in refused] == [None, None]
    error = refused[0][1]
    assert (
        error is not None
        and "at primary address 5 the meter with identification 33333333 answered, not 11111111" in error
    )
    assert 'pin it: identification = "33333333"' in error
    assert taken[0][0] is not None and taken[0][0].volume_m3 == pytest.approx(new.meter.volume_m3(NOW))
    assert taken[0][0].meter_id == "FLAT-5"


def test_an_exchanged_meter_costs_its_poll_one_exchange_while_a_meter_that_does_not_answer_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With ``retries = 2``: the other meter's answer at FLAT-5's address comes again however often it
    is asked, so it is not asked again within the poll (one SND_NKE and one REQ_UD2). Before, each
    retry made both again: 3 exchanges of the slow bus's time at every poll interval, the same refusal
    each time. A meter that does not answer (a failure a retry can mend) is still asked 3 times."""
    with MBusSimulator([_water_meter("11111111", 5, 1234.0)], mbus_line(9600), clock=lambda: NOW) as sim:
        sim.exchange("11111111", _water_meter("33333333", 0, 0.0))
        bus = replace(
            _bus(
                sim.port, MeterConfig("FLAT-5", 5, "mbus", identification="11111111"), MeterConfig("GONE-9", 9, "mbus")
            ),
            retries=2,
            retry_backoff_s=0.01,
        )
        with caplog.at_level(logging.WARNING):
            results = Polls(bus).run("FLAT-5", "GONE-9")
        heard = dict(sim.bus.requests)
    assert [reading for reading, _ in results] == [None, None]
    assert (
        results[0][1] is not None and "the meter with identification 33333333 answered, not 11111111" in results[0][1]
    )
    assert {request: n for request, n in heard.items() if request[1] == 5} == {("SND_NKE", 5): 1, ("REQ_UD2", 5): 1}
    assert {request: n for request, n in heard.items() if request[1] == 9} == {("SND_NKE", 9): 3}
    warnings = _scheduler_warnings(caplog)
    assert warnings[0].startswith("FLAT-5 on mbus-1: failed after 1 attempt, the last: FLAT-5: at primary address 5")
    assert warnings[1].startswith("GONE-9 on mbus-1: failed after 3 attempts, the last: GONE-9: no answer")


def test_a_refused_answer_leaves_the_line_open_and_the_other_meters_initialised() -> None:
    """A refused answer came whole: the line is in step. Before, the transport closed the line after
    it as after any failure, and every other meter of the bus had a SND_NKE again at its next poll
    (FLAT-6 here: 2 where 1 is needed), a request more each at every poll interval."""
    meters = [_water_meter("11111111", 5, 1234.0), _water_meter("22222222", 6, 300.0)]
    with MBusSimulator(meters, mbus_line(9600), clock=lambda: NOW) as sim:
        sim.exchange("11111111", _water_meter("33333333", 0, 0.0))
        bus = _bus(
            sim.port, MeterConfig("FLAT-5", 5, "mbus", identification="11111111"), MeterConfig("FLAT-6", 6, "mbus")
        )
        results = Polls(bus).run("FLAT-6", "FLAT-5", "FLAT-6", "FLAT-5", "FLAT-6")
        heard = dict(sim.bus.requests)
    assert [reading is not None for reading, _ in results] == [True, False, True, False, True], results
    assert heard[("SND_NKE", 6)] == 1
    assert heard[("SND_NKE", 5)] == 2  # the refused meter's link layer is reset at each poll, as after any failure


def test_the_simulator_s_exchange_keeps_the_address_and_refuses_an_identification_already_on_the_bus() -> None:
    bus_meters = [_water_meter("11111111", 5, 1.0), _water_meter("22222222", 6, 2.0)]
    with MBusSimulator(bus_meters, mbus_line(9600), clock=lambda: NOW) as sim:
        new = _water_meter("33333333", 0, 0.0)
        assert sim.exchange("11111111", new) is bus_meters[0] and new.primary_address == 5
        with pytest.raises(ValueError, match="share a secondary address"):
            sim.exchange("33333333", _water_meter("22222222", 0, 0.0))
        with pytest.raises(ValueError, match="no meter with identification 44444444"):
            sim.swap_primary_addresses("44444444", "22222222")
        assert [m.identification for m in sim.bus.meters] == ["33333333", "22222222"]


# ---- the check, on its own ---------------------------------------------------------------------------

IDENTIFICATIONS = st.sampled_from(["11111111", "22222222", "33333333"])


def _telegram(identification: str | None) -> dict[str, Any]:
    return {"id": identification, "a_field": 5, "function": "RSP_UD"}


@given(st.lists(IDENTIFICATIONS, min_size=1, max_size=12), st.one_of(st.none(), IDENTIFICATIONS))
def test_only_answers_with_the_expected_identification_are_taken(answers: list[str], pinned: str | None) -> None:
    """Configured: only its identification; else only the first answer's, whatever came after."""
    meter = MeterConfig("FLAT-5", 5, "mbus", identification=pinned)
    identities = MeterIdentities()
    expected = pinned if pinned is not None else answers[0]
    for n, identification in enumerate(answers):
        at = NOW + timedelta(seconds=n)
        if identification == expected:
            check_identification(identities, meter, _telegram(identification), at, [meter])
        else:
            with pytest.raises(
                IdentificationMismatch, match=f"identification {identification} answered, not {expected}"
            ):
                check_identification(identities, meter, _telegram(identification), at, [meter])
    assert expected_identification(identities, meter) == expected


def test_an_answer_without_identification_is_refused_only_for_a_pinned_meter() -> None:
    identities = MeterIdentities()
    check_identification(identities, MeterConfig("FLAT-5", 5, "mbus"), _telegram(None), NOW, [])
    assert expected_identification(identities, MeterConfig("FLAT-5", 5, "mbus")) is None  # nothing to remember
    with pytest.raises(IdentificationMismatch, match="carries no identification to check against"):
        pinned = MeterConfig("FLAT-5", 5, "mbus", identification="11111111")
        check_identification(identities, pinned, _telegram(None), NOW, [])


def test_the_first_answer_s_identification_is_kept_in_the_spool_and_its_failures_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kept: a restart (a new MeterIdentities on the same spool) expects it. A spool that cannot
    store it: said, the answer taken (checked until the gateway stops). One that cannot be read:
    the poll fails, saying so, rather than trust whichever meter answers."""
    meter = MeterConfig("FLAT-5", 5, "mbus")
    spool = Spool(tmp_path / "s.sqlite")
    check_identification(MeterIdentities(spool), meter, _telegram("11111111"), NOW, [meter])
    restarted = MeterIdentities(spool)
    assert expected_identification(restarted, meter) == "11111111"
    with pytest.raises(
        IdentificationMismatch,
        match=r"not 11111111, the identification of this meter's first answer, at 2026-06-04T03:30:00",
    ):
        check_identification(restarted, meter, _telegram("22222222"), NOW, [meter])

    other = MeterConfig("FLAT-6", 6, "mbus")
    unstored = MeterIdentities(spool)
    assert expected_identification(unstored, other) is None  # (looked up while the spool could answer)
    spool.close()
    with caplog.at_level(logging.WARNING, logger="gateway.meter_identity"):
        check_identification(unstored, other, _telegram("22222222"), NOW, [other])
    assert expected_identification(unstored, other) == "22222222"
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.meter_identity"] == [
        "FLAT-6: its identification 22222222 is checked until the gateway stops, but cannot be kept in the spool "
        "for after a restart: Cannot operate on a closed database."
    ]
    with pytest.raises(
        PollError,
        match=r"the identification of its first answer cannot be read from the spool "
        r"\(Cannot operate on a closed database.\): its answer is not taken unchecked",
    ):
        check_identification(MeterIdentities(spool), meter, _telegram("11111111"), NOW, [meter])


# ---- the configuration ----------------------------------------------------------------------------------


def _config(*meters: dict[str, Any]) -> str:
    bus = {"name": "mbus-1", "protocol": "mbus", "device": "/dev/ttyUSB7"}
    return bus_config_text("mqtt://127.0.0.1:1", "/tmp/s.sqlite", bus, list(meters), gateway_id="gw")


def test_identification_is_read_for_a_meter_on_a_primary_address() -> None:
    config = parse_config_text(_config({"meter_id": "FLAT-5", "address": 5, "identification": "01234567"}))
    assert config.meters[0].identification == "01234567"
    assert parse_config_text(_config({"meter_id": "FLAT-5", "address": 5})).meters[0].identification is None


@pytest.mark.parametrize(
    ("meters", "said"),
    [
        ([{"meter_id": "F", "address": 5, "identification": "1234567"}], "'1234567' is not an 8-digit identification"),
        (
            [{"meter_id": "F", "address": 5, "identification": "1234567F"}],
            "'1234567F' is not an 8-digit identification",
        ),
        (
            [{"meter_id": "F", "secondary_address": "12345678", "identification": "12345678"}],
            "is for a meter on a primary address: a meter's secondary_address is its identification already",
        ),
        (
            [
                {"meter_id": "F", "address": 5, "identification": "12345678"},
                {"meter_id": "G", "address": 6, "identification": "12345678"},
            ],
            "12345678 on bus 'mbus-1' is already meter 'F'",
        ),
        (
            [
                {"meter_id": "F", "address": 5, "identification": "12345678"},
                {"meter_id": "G", "secondary_address": "12345678"},
            ],
            "secondary address 12345678 on bus 'mbus-1' is already meter 'F'",
        ),
        (
            [
                {"meter_id": "G", "secondary_address": "12345678"},
                {"meter_id": "F", "address": 5, "identification": "12345678"},
            ],
            "12345678 on bus 'mbus-1' is already meter 'G'",
        ),
    ],
)
def test_an_identification_that_cannot_be_a_meter_s_is_refused(meters: list[dict[str, Any]], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config_text(_config(*meters))
    assert said in str(refused.value)


@pytest.mark.parametrize("between", ["reload", "restart"])
def test_a_reload_or_a_restart_keeps_the_identification_a_meter_answered_with_first(
    tmp_path: Path, between: str
) -> None:
    """A meter exchanged just before a reload (which makes the buses anew), or while the gateway was
    stopped: before, the first answer after it was taken as the meter's, the new meter's register
    stored under the old meter's id (a step back of some 1200 m3)."""
    old = _water_meter("11111111", 5, 1234.0)
    with MBusSimulator([old], mbus_line(9600), clock=lambda: NOW) as sim:
        bus = {"name": "mbus-1", "protocol": "mbus", "device": sim.port, "baudrate": 9600, "parity": PARITY,
               "answer_timeout_s": WINDOW_S, "retries": 0, "poll_interval_s": 0.3}  # fmt: skip
        text = bus_config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            tmp_path / "s.sqlite",
            bus,
            [{"meter_id": "FLAT-5", "address": 5}],
            gateway_id="gw-exchange",
        )

        def exchange() -> None:
            sim.exchange("11111111", _water_meter("33333333", 0, 0.0))

        last, before, after = exchanged_across(text, between, exchange, "FLAT-5")
    assert before and before[0].volume_m3 == pytest.approx(old.meter.volume_m3(NOW))
    assert after == []  # the new meter's register never stored as FLAT-5's
    last_error = last.health.meters["FLAT-5"].last_error
    assert last_error is not None
    assert "at primary address 5 the meter with identification 33333333 answered, not 11111111" in last_error[1]
