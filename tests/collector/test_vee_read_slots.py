"""A read stamped a little before its slot (a gateway's poll) or seconds after it (10:00:07) stands
for that slot: the slot gets no estimate, and a gap of k missing reads gets k estimates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.estimation import estimate
from collector.vee.rounds import vee_round
from collector.vee.rules import validate
from collector.vee.series import Series

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def _estimated(ts: np.ndarray) -> np.ndarray:
    """The estimates' times for one meter's reads at ``ts`` (10 L an hour)."""
    config = VeeConfig()
    volume = np.round(100.0 + (ts - T0) / 3600 * 0.010, 3)
    series = Series.from_arrays(["M"], np.zeros(len(ts), np.int64), ts, volume, config)
    return estimate(series, validate(series, config, float(ts.max()) + 60), config).ts


@settings(max_examples=150)
@given(
    interval=st.sampled_from([300, 900, 1800, 3600]),
    offset=st.one_of(st.floats(-0.5, 0.049), st.sampled_from([7 / 3600, 7 / 900, -240 / 3600, 0.0])),
    first_missing=st.integers(2, 20),
    missing=st.integers(1, 4),
)
def test_a_gap_of_k_missing_reads_gets_k_estimates_at_their_slots(interval, offset, first_missing, missing):
    """Reads ``offset`` of the interval off each slot (a gateway's poll up to half an interval
    before it, or a stamp up to a twentieth after it: 10:00:07), ``missing`` of them lost. Before,
    every such gap had one estimate too many: a read 7 s past its slot left the slot on the hour
    before it to the gap (an estimate 7 s before the meter's read), a read polled 4 minutes before
    its slot had one 4 minutes after it."""
    slots = T0 + interval * np.arange(30)
    ts = slots + offset * interval
    lost = np.arange(first_missing, first_missing + missing)
    estimated = _estimated(np.delete(ts, lost))
    assert estimated.tolist() == slots[lost].tolist()


def test_the_proof_s_hourly_meter_stamped_at_seven_seconds_past(migrated_database_url):
    """An hourly meter stamped at :07, its reads at 09:00:07 and 10:00:07 lost: a round wrote 3
    estimates, the last at 11:00:00, 7 s before the meter's read at 11:00:07; now 2, at 09:00 and
    10:00. Estimates an earlier round left at a read's own slot go at the next round."""
    url = migrated_database_url
    start = datetime(2026, 3, 10, tzinfo=UTC)
    stamps = [start + timedelta(hours=h, seconds=7) for h in range(12)]
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as cp:
            for h, t in enumerate(stamps):
                if h not in (9, 10):
                    cp.write_row(("M", t, f"{100 + h * 0.01:.3f}", t))
    assert vee_round(url, stamps[-1] + timedelta(minutes=5)) is not None
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT ts, volume_m3 FROM readings WHERE quality = 'estimated' ORDER BY ts").fetchall()
    assert rows == [(start + timedelta(hours=9), Decimal("100.090")), (start + timedelta(hours=10), Decimal("100.100"))]

    # what an earlier round wrote: a third estimate at 11:00:00, 7 s before the read at 11:00:07
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
            "VALUES ('M', %s, 100.110, 'estimated', 'vee:linear', 'linear estimate in the gap')",
            (start + timedelta(hours=11),),
        )
    assert vee_round(url, stamps[-1] + timedelta(minutes=65)) is not None
    with psycopg.connect(url) as conn:
        times = conn.execute("SELECT ts FROM readings WHERE quality = 'estimated' ORDER BY ts").fetchall()
        gone = conn.execute("SELECT ts, superseded_by FROM reading_history WHERE quality = 'estimated'").fetchall()
    assert times == [(start + timedelta(hours=9),), (start + timedelta(hours=10),)]
    assert gone == [(start + timedelta(hours=11), "vee:read-slot")]
