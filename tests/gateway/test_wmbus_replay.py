"""The replay guard on its own: a message counter must grow, a meter clock must not go back."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.spool import Spool
from gateway.wmbus_replay import Freshness, ReplayGuard, freshness_of


@given(st.lists(st.integers(0, 2**32 - 1), max_size=30))
def test_a_message_counter_is_accepted_only_above_every_one_accepted_before(counters: list[int]) -> None:
    """OMS Vol. 2 / EN 13757-7:2018 6.3.5: the AFL message counter grows with every message."""
    guard = ReplayGuard()
    highest: int | None = None
    for counter in counters:
        heard = Freshness(message_counter=counter)
        fresh = guard.why_replayed("M", "12345678", heard) is None
        assert fresh == (highest is None or counter > highest)
        if fresh:
            guard.accept("M", "12345678", heard)
            highest = counter


@given(st.lists(st.datetimes().map(lambda t: t.replace(second=0, microsecond=0).isoformat()), max_size=30))
def test_a_meter_clock_is_accepted_unless_it_goes_back(times: list[str]) -> None:
    """Without a counter (mode 5, ELL), the meter's own clock: equal is fine (whole minutes), earlier is not."""
    guard = ReplayGuard()
    latest: str | None = None
    for moment in times:
        heard = Freshness(meter_time=moment)
        fresh = guard.why_replayed("M", "12345678", heard) is None
        assert fresh == (latest is None or moment >= latest)
        if fresh:
            guard.accept("M", "12345678", heard)
            latest = moment


def test_what_was_accepted_survives_a_restart_per_meter_and_device(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    ReplayGuard(spool).accept("FLAT-1", "12345678", Freshness(41, "2026-03-08T00:00"))
    spool.close()
    spool = Spool(tmp_path / "s.sqlite")
    guard = ReplayGuard(spool)
    assert guard.last("FLAT-1", "12345678") == Freshness(41, "2026-03-08T00:00")
    assert guard.why_replayed("FLAT-1", "12345678", Freshness(41)) is not None
    assert guard.why_replayed("FLAT-1", "87654321", Freshness(1)) is None  # a replaced meter starts afresh
    spool.close()


def test_the_clock_is_the_current_date_time_record() -> None:
    records = [
        {
            "storage": 1,
            "tariff": 0,
            "subunit": 0,
            "function": "instantaneous",
            "quantity": "datetime",
            "value": "2026-01-01T00:00",
        },
        {
            "storage": 0,
            "tariff": 0,
            "subunit": 0,
            "function": "instantaneous",
            "quantity": "date",
            "value": "2026-03-09",
        },
        {"storage": 0, "tariff": 0, "subunit": 0, "function": "instantaneous", "quantity": "datetime", "value": None},
        {
            "storage": 0,
            "tariff": 0,
            "subunit": 0,
            "function": "instantaneous",
            "quantity": "datetime",
            "value": "2026-03-08T00:00",
        },
    ]
    assert freshness_of({"records": records, "afl": None}) == Freshness(None, "2026-03-08T00:00")
    assert freshness_of({"records": [], "afl": {"message_counter": 7}}) == Freshness(7, None)
