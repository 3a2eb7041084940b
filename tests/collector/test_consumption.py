"""Hourly and daily consumption per meter and per DMA, from the register, across rollover and replacement."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import psycopg
import pytest

from collector.vee.config import VeeConfig
from collector.vee.rules import validate
from collector.vee.runner import run_vee
from tests.collector.test_vee_db import END, START, load_fleet
from tests.collector.test_vee_rules import NOW, as_series


def reference_hourly(data: dict) -> dict[tuple[str, float], float]:
    """What the consumption tables must hold, computed independently in NumPy."""
    config = VeeConfig()
    series = as_series(data["names"], data["meters"], config)
    consumption = validate(series, config, NOW).interval_consumption
    hourly: dict[tuple[str, float], float] = defaultdict(float)
    for i in np.flatnonzero(np.isfinite(consumption)):
        hour = float(np.floor((series.ts[i] - 1) / 3600) * 3600)
        hourly[(series.meter_ids[series.meter[i]], hour)] += consumption[i]
    return hourly


def refresh(url: str, estimate: bool) -> None:
    with psycopg.connect(url) as conn:
        run_vee(conn, START, END, now=datetime.fromtimestamp(NOW, UTC), estimate_gaps=estimate)
        conn.execute("UPDATE meters SET dma = CASE WHEN meter_id < 'M5' THEN 'DMA-A' ELSE 'DMA-B' END")
        conn.execute("SELECT refresh_consumption(%s, %s)", (START, END))


def test_hourly_daily_and_dma_consumption_match_the_register_across_steps(migrated_database_url):
    url = migrated_database_url
    data = load_fleet(url)
    refresh(url, estimate=False)
    expected = reference_hourly(data)
    with psycopg.connect(url) as conn:
        hourly = {
            (m, h.timestamp()): float(c)
            for m, h, c in conn.execute("SELECT meter_id, hour, consumption_m3 FROM consumption_hourly")
        }
        daily = conn.execute("SELECT meter_id, sum(consumption_m3) FROM consumption_daily GROUP BY 1").fetchall()
        dma_rows = conn.execute("SELECT dma, sum(consumption_m3) FROM dma_consumption_hourly GROUP BY 1").fetchall()
        dma: dict[str, Decimal] = dict(dma_rows)
        unknown = conn.execute("SELECT sum(unknown) FROM consumption_hourly").fetchone()
        dma_daily: dict[str, Decimal] = dict(
            conn.execute("SELECT dma, sum(consumption_m3) FROM dma_consumption_daily GROUP BY 1").fetchall()
        )
        m1 = conn.execute("SELECT meter_consumption('M1-rollover', %s, %s)", (START, END)).fetchone()
        again = conn.execute("SELECT refresh_consumption(%s, %s)", (START, END)).fetchone()
        count = conn.execute("SELECT count(*) FROM consumption_hourly").fetchone()
    assert hourly.keys() == expected.keys()
    for key, value in expected.items():
        assert hourly[key] == pytest.approx(value, abs=1e-9), key
    totals = {m: float(c) for m, c in daily}
    assert all(total > 0 for total in totals.values())  # a rollover is not -100 000 m³, nor a replacement
    m1_volume = data["meters"]["M1-rollover"].volume
    assert totals["M1-rollover"] == pytest.approx(m1_volume[-1] + 100_000 - m1_volume[0], abs=1e-9)
    assert m1 is not None and float(m1[0]) == pytest.approx(totals["M1-rollover"], abs=1e-9)
    per_dma: dict[str, float] = defaultdict(float)
    for meter, total in totals.items():
        per_dma["DMA-A" if meter < "M5" else "DMA-B"] += total
    assert {k: float(v) for k, v in dma.items()} == pytest.approx(dict(per_dma), abs=1e-9)
    assert dma_daily == dma
    assert unknown == (0,)
    assert again is not None and count == (again[0],)  # a second refresh rewrites, never adds


def test_estimates_spread_a_gap_over_its_hours_without_changing_the_total(migrated_database_url):
    url = migrated_database_url
    data = load_fleet(url)
    refresh(url, estimate=True)
    expected = reference_hourly(data)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT hour, consumption_m3, not_actual FROM consumption_hourly WHERE meter_id = 'M5-gaps' ORDER BY 1"
        ).fetchall()
    total_expected = sum(v for (m, _), v in expected.items() if m == "M5-gaps")
    assert float(sum(c for _, c, _ in rows)) == pytest.approx(total_expected, abs=1e-9)
    assert len(rows) == len(data["meters"]["M5-gaps"].ts) + 39 - 1  # every hour has its own value now
    assert sum(n for _, _, n in rows) == 39
    assert all(isinstance(c, Decimal) for _, c, _ in rows)


def test_an_unexplained_backward_step_is_unknown_not_negative(migrated_database_url):
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, dma) VALUES ('U1', 'DMA-U')")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES "
            "('U1', '2026-02-02T01:00Z', 500), ('U1', '2026-02-02T02:00Z', 500.5), "
            "('U1', '2026-02-02T03:00Z', 450), ('U1', '2026-02-02T04:00Z', 450.25)"
        )
        conn.commit()
        run_vee(conn, START, END, now=datetime.fromtimestamp(NOW, UTC))
        conn.execute("SELECT refresh_consumption(%s, %s)", (START, END))
        rows = conn.execute("SELECT hour, consumption_m3, unknown FROM consumption_hourly ORDER BY 1").fetchall()
        flags = conn.execute("SELECT rule FROM vee_flags").fetchall()
        total = conn.execute("SELECT meter_consumption('U1', '2026-02-02T01:00Z', '2026-02-02T04:00Z')").fetchone()
    assert [(h.hour, c, u) for h, c, u in rows] == [
        (1, Decimal("0.5"), 0),
        (2, Decimal("0"), 1),
        (3, Decimal("0.25"), 0),
    ]
    assert flags == [("register_backwards",)]
    assert total == (None,)  # billing must not take an incomplete total for a complete one


def test_a_register_wobbling_back_within_the_tolerance_keeps_consumption_known_and_exact(migrated_database_url):
    """A 0.1-litre register that steps back 0.2 L (a static meter's pressure transient), and VEE's
    own estimates, rounded to litres, in a gap of such a register: both made an interval NULL (VEE
    calls such drops noise and explains none), so the hour, the day and the bill went unknown."""
    day = START.replace(hour=0)
    reads = {
        "W1": [(0, "100.0000"), (1, "100.0010"), (2, "100.0008"), (3, "100.0030")],
        "W2": [(0, "100.0000"), (1, "100.0001"), (4, "100.0004"), (5, "100.0005")],  # a gap 01:00-04:00
    }
    with psycopg.connect(migrated_database_url) as conn:
        for meter, rows in reads.items():
            conn.execute("INSERT INTO meters (meter_id, dma) VALUES (%s, 'DMA-W')", (meter,))
            for hour, volume in rows:
                conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)",
                             (meter, day + timedelta(hours=hour), Decimal(volume)))  # fmt: skip
        conn.commit()
        run_vee(conn, START, END, now=datetime.fromtimestamp(NOW, UTC))
        conn.execute("SELECT refresh_consumption(%s, %s)", (START, END))
        estimates = conn.execute(
            "SELECT volume_m3 FROM readings WHERE meter_id = 'W2' AND quality = 'estimated' ORDER BY ts"
        ).fetchall()
        totals = {
            meter: conn.execute(
                "SELECT meter_consumption(%s, %s, %s)", (meter, day, day + timedelta(hours=5))
            ).fetchone()
            for meter in reads
        }
        unknown = conn.execute("SELECT sum(unknown) FROM consumption_hourly WHERE meter_id LIKE 'W%%'").fetchone()
        daily: dict[str, Decimal] = dict(
            conn.execute("SELECT meter_id, sum(consumption_m3) FROM consumption_daily GROUP BY 1").fetchall()
        )
    assert [v for (v,) in estimates] and all(Decimal("100.0001") <= v <= Decimal("100.0004") for (v,) in estimates)
    assert totals == {"W1": (Decimal("0.0030"),), "W2": (Decimal("0.0005"),)}  # the registers' differences
    assert unknown == (0,)
    assert daily == {"W1": Decimal("0.0030"), "W2": Decimal("0.0005")}


def test_the_schema_records_which_timescaledb_features_it_could_use(migrated_database_url):
    with psycopg.connect(migrated_database_url) as conn:
        license_ = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        features: dict[str, bool] = dict(conn.execute("SELECT feature, available FROM storage_features").fetchall())
        hypertables = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        jobs = conn.execute(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name = 'readings'"
        ).fetchone()
    tsl = license_ == ("timescale",)
    assert features == {"hypertables": True, "compression": tsl, "retention": tsl, "continuous_aggregates": tsl}
    assert {"readings", "events", "consumption_hourly"} <= hypertables
    assert jobs == ((1,) if tsl else (0,))  # the compression policy, only where the edition has it


def test_the_database_and_vee_share_one_tolerance_for_a_register_stepping_back(migrated_database_url):
    """Migration 0054 writes VEE's backwards_tolerance_m3 as a literal: the two must not drift apart,
    or one would count as consumption what the other leaves unknown."""
    tolerance = Decimal(str(VeeConfig().backwards_tolerance_m3))
    with psycopg.connect(migrated_database_url) as conn:
        within, beyond = conn.execute(
            "SELECT interval_consumption(100 - %s, 100, false, NULL), interval_consumption(100 - %s, 100, false, NULL)",
            (tolerance, tolerance + Decimal("0.0000001")),
        ).fetchone() or (None, None)
    assert within == -tolerance and beyond is None
