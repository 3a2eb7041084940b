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


def _clock(value: str, summer_time: bool | None) -> dict[str, object]:
    record: dict[str, object] = {
        "storage": 0,
        "tariff": 0,
        "subunit": 0,
        "function": "instantaneous",
        "quantity": "datetime",
        "value": value,
    }
    if summer_time is not None:
        record["summer_time"] = summer_time
    return record


def test_a_meter_clock_going_back_an_hour_in_autumn_is_no_replay_and_a_summer_telegram_after_it_is() -> None:
    """On 2026-10-25 a meter keeping summer time reads 02:50 (SU set), then 02:05 (SU clear): taken at
    face value, its clock had gone back and every telegram of that hour was refused. At standard time
    the clock goes on (01:50, 02:05); the 02:50 summer telegram heard again after 02:05 is a replay."""
    guard = ReplayGuard()
    summer = freshness_of({"records": [_clock("2026-10-25T02:50", True)], "afl": None})
    winter = freshness_of({"records": [_clock("2026-10-25T02:05", False)], "afl": None})
    assert guard.why_replayed("M", "12345678", summer) is None
    guard.accept("M", "12345678", summer)
    assert guard.why_replayed("M", "12345678", winter) is None
    guard.accept("M", "12345678", winter)
    assert guard.why_replayed("M", "12345678", summer) == (
        "meter time 2026-10-25T01:50:00 is before the last accepted 2026-10-25T02:05"
    )
