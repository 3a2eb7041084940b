"""An interval without a reading is unknown: it never ends an episode. Only a reading showing the
trouble gone (the flow stopped, the register moved, the alarm bit cleared) does.

Each case builds one block twice: with the last intervals read (the reading shows the end) and with
those intervals missing (NaN, no alarm bits: what ``fetch_block`` gives when the newest reads have
not arrived yet). The first must end the episode; the second must leave it open.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from collector.detection.alerts import Alert, AlertKind, AlertSource
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect, run_detection
from collector.detection.series import SeriesBlock
from tests.collector.test_detection_households import add_flow, at_hour, block_of, household

DAYS = 21


def _missing_last(block: SeriesBlock, k: int, rows: slice | None = None) -> SeriesBlock:
    """``block`` with the last ``k`` intervals unread (for ``rows``, default every meter)."""
    volume = block.volume_m3.copy()
    rows = rows if rows is not None else slice(None)
    volume[rows, -k:] = np.nan
    alarms = {}
    for name, bits in block.alarms.items():
        bits = bits.copy()
        bits[rows, -k:] = False  # no reading, no bits
        alarms[name] = bits
    return dataclasses.replace(block, volume_m3=volume, alarms=alarms)


def _one(alerts: list[Alert], kind: AlertKind, source: AlertSource = AlertSource.DETECTOR) -> Alert:
    found = [a for a in alerts if a.kind is kind and a.source is source]
    assert len(found) == 1, found
    return found[0]


def _quiet_tail(use: np.ndarray, from_h: int) -> np.ndarray:
    """Nobody uses water from hour ``from_h`` on (so the reads after it show the fault alone)."""
    out = use.copy()
    out[from_h:] = 0.0
    return out


# ---- the meters' own alarm bits --------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", ["tamper", "leak"])
def test_a_meter_alarm_is_not_cleared_by_missing_reads(name: str, k: int) -> None:
    rng = np.random.default_rng(101)
    block = block_of({"A": household(rng, 5), "B": household(rng, 5)})
    t = block.n_intervals
    bits = np.zeros(block.volume_m3.shape, dtype=bool)
    bits[1, 30:] = True  # meter B raises the alarm at 30:00 and still has it at its latest reading
    block = dataclasses.replace(block, alarms={name: bits})
    kind = AlertKind(name)

    still_on = _one(detect(_missing_last(block, k)), kind, AlertSource.METER)
    assert still_on.start == at_hour(30)
    assert still_on.ended_at is None
    assert still_on.last_seen == at_hour(t - 1 - k)  # the latest reading that showed it

    cleared_bits = bits.copy()
    cleared_bits[1, t - k :] = False  # read, and the bit is gone
    cleared_block = dataclasses.replace(block, alarms={name: cleared_bits})
    cleared = _one(detect(cleared_block, DetectionConfig(alarm_hold_off_h=0)), kind, AlertSource.METER)
    assert cleared.ended_at == at_hour(t - k)
    assert cleared.last_seen == at_hour(t - 1 - k)
    # within the hold-off of its clear, the bit may yet come back: the alarm is not over yet
    held = _one(detect(cleared_block), kind, AlertSource.METER)
    assert (held.start, held.ended_at, held.last_seen) == (at_hour(30), None, at_hour(t - 1 - k))


def test_a_missing_read_inside_an_alarm_neither_ends_it_nor_starts_another() -> None:
    rng = np.random.default_rng(102)
    block = block_of({"A": household(rng, 5)})
    bits = np.zeros(block.volume_m3.shape, dtype=bool)
    bits[0, 30:60] = True
    volume = block.volume_m3.copy()
    volume[0, 40:43] = np.nan
    bits[0, 40:43] = False
    block = dataclasses.replace(block, volume_m3=volume, alarms={"tamper": bits})
    alert = _one(detect(block), AlertKind.TAMPER, AlertSource.METER)
    assert (alert.start, alert.ended_at) == (at_hour(30), at_hour(60))


# ---- continuous flow (leak) and bursts ---------------------------------------------------------


def test_a_leak_is_not_ended_by_missing_reads() -> None:
    rng = np.random.default_rng(103)
    hours = 12 * 24 + 3  # the block ends at 03:00 of day 12
    stop_h = hours - 3  # the leak is repaired at midnight; nobody uses water after that
    use = _quiet_tail(household(rng, DAYS)[:hours], stop_h)
    repaired = block_of({"LEAK": add_flow(use, 8 * 24 + 1.5, 10.0, stop_h)})
    ended = _one(detect(repaired), AlertKind.LEAK)
    assert ended.ended_at is not None and abs((ended.ended_at - at_hour(stop_h)).total_seconds()) <= 3600

    unknown = _one(detect(_missing_last(repaired, 3)), AlertKind.LEAK)
    assert unknown.ended_at is None
    assert unknown.detected_at == ended.detected_at  # the same episode, still open


def test_a_burst_is_not_ended_by_missing_reads() -> None:
    rng = np.random.default_rng(104)
    hours = 12 * 24 + 14
    start_h, stop_h = 12 * 24 + 9.0, 12 * 24 + 12.0
    use = _quiet_tail(household(rng, DAYS)[:hours], int(stop_h))
    repaired = block_of({"BURST": add_flow(use, start_h, 800.0, stop_h)})
    ended = _one(detect(repaired), AlertKind.BURST)
    assert ended.ended_at is not None

    unknown = _one(detect(_missing_last(repaired, 2)), AlertKind.BURST)
    assert unknown.ended_at is None
    assert unknown.detected_at == ended.detected_at


# ---- the register: reverse flow, stuck ---------------------------------------------------------


def test_reverse_flow_is_not_ended_by_missing_reads() -> None:
    """Reverse flow ends once a whole window (24 h) of reads shows no backward flow; a day without
    reads shows nothing."""
    rng = np.random.default_rng(105)
    start_h = 10 * 24 + 1.0
    stop_h = 10 * 24 + 5.0
    hours = int(stop_h) + 30
    use = household(rng, DAYS)[:hours]
    use[int(start_h) :] = 0.0  # nobody at home from 01:00: the register shows the backward flow alone
    back = add_flow(np.zeros(hours), start_h, 30.0, stop_h)
    block = block_of({"BACK": use - back})
    ended = _one(detect(block), AlertKind.REVERSE_FLOW)
    assert ended.ended_at is not None  # thirty hours of reads show the register at rest

    unknown = _one(detect(_missing_last(block, 30)), AlertKind.REVERSE_FLOW)
    assert unknown.ended_at is None
    assert unknown.detected_at == ended.detected_at


def test_a_stuck_register_is_not_unstuck_by_missing_reads() -> None:
    rng = np.random.default_rng(106)
    stop_h = 5 * 24
    hours = stop_h + 9 * 24 + 2
    use = household(rng, DAYS)[:hours]
    volume = block_of({"S": use}).volume_m3.copy()
    volume[0, stop_h:-1] = volume[0, stop_h]  # the register stops for nine days …
    block = block_of({"S": use}, volume=volume)  # … and moves again at the last read
    # no inlet to confirm it: the register alone decides, here after seven days
    config = dataclasses.replace(DetectionConfig(), stuck_unconfirmed_days=7.0)
    ended = _one(detect(block, config), AlertKind.STUCK)
    assert ended.ended_at == block.time(block.n_intervals - 1)

    unknown = _one(detect(_missing_last(block, 1), config), AlertKind.STUCK)
    assert unknown.ended_at is None
    assert unknown.detected_at == ended.detected_at


# ---- the district ----------------------------------------------------------------------------


def test_a_main_burst_is_not_ended_by_missing_inlet_reads() -> None:
    rng = np.random.default_rng(107)
    uses = {f"C{i}": household(rng, DAYS) for i in range(60)}
    demand = np.stack(list(uses.values())).sum(axis=0)
    size = 0.2 * float(demand.mean())
    start_h, stop_h = 12 * 24 + 2.0, 13 * 24 + 2.0
    hours = int(stop_h) + 12
    losses = add_flow(np.full(DAYS * 24, 100.0), start_h, size, stop_h)
    block = block_of({c: u[:hours] for c, u in uses.items()}, inlet_extra_l=losses[:hours])
    ended = _one(run_detection(block).alerts, AlertKind.DMA_BURST)
    assert ended.ended_at is not None  # twelve hours of reads at the old level show the repair

    inlet = slice(block.n_meters - 1, block.n_meters)
    for unknown_block in (_missing_last(block, 12, inlet), _missing_last(block, 12)):
        unknown = _one(run_detection(unknown_block).alerts, AlertKind.DMA_BURST)
        assert unknown.ended_at is None
        assert unknown.detected_at == ended.detected_at


@pytest.mark.parametrize("name", ["tamper", "burst"])
def test_a_flapping_alarm_is_one_episode_ended_once_it_stays_clear_for_the_hold_off(name: str) -> None:
    """A bit set on every other hourly poll for a day opened an alert per flap: 12 alerts and 12
    enquiries (12 urgent ones for a burst bit). Back within the hold-off (6 h) of its clear, it is
    one episode, whose end is told once the bit has stayed clear that long; back later, it is
    another."""
    rng = np.random.default_rng(105)
    block = block_of({"A": household(rng, 5)})
    bits = np.zeros(block.volume_m3.shape, dtype=bool)
    bits[0, 48:72:2] = True  # on at 48:00, 50:00, … 70:00, clear at the polls between
    bits[0, 80] = True  # nine hours after the last flap's clear (71:00): another episode
    alarms = {name: bits}
    kind = AlertKind(name)
    alerts = [a for a in detect(dataclasses.replace(block, alarms=alarms)) if a.source is AlertSource.METER]
    assert [(a.kind, a.start, a.ended_at, a.last_seen) for a in alerts] == [
        (kind, at_hour(48), at_hour(71), at_hour(70)),
        (kind, at_hour(80), at_hour(81), at_hour(80)),
    ]
    # a run at 74:00 (the flapping's clear three hours old) does not yet know it ended
    early = dataclasses.replace(
        block, volume_m3=block.volume_m3[:, :75], timestamps=block.timestamps[:75], alarms={name: bits[:, :75]}
    )
    (running,) = [a for a in detect(early) if a.source is AlertSource.METER]
    assert (running.start, running.ended_at, running.last_seen) == (at_hour(48), None, at_hour(70))
    # the hold-off off: every flap an alert, as before
    flaps = detect(dataclasses.replace(block, alarms=alarms), DetectionConfig(alarm_hold_off_h=0))
    assert len([a for a in flaps if a.source is AlertSource.METER]) == 13
