"""VEE rounds and the gaps they estimate: a gap reaching back before a round's two days, and a
late read landing inside a gap an earlier round had estimated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from collector.vee.rounds import vee_round

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _store_on_time(url: str, meter: str, reads: list[tuple[datetime, str]]) -> None:
    """Reads as they would have arrived on time (``received_at`` their own time): none is late."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true) ON CONFLICT DO NOTHING", (meter,))
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as cp:
            for t, v in reads:
                cp.write_row((meter, t, v, t))


def test_a_silence_longer_than_a_round_s_window_is_estimated_whole(migrated_database_url):
    """An hourly meter silent for three days (70 hours missing), 10 L an hour throughout. The round
    after it estimated only the 46 hours inside its two days, and no later round the other 24 (the
    gap's closing read is behind their periods): one interval held 25 hours of water, 0.25 m³."""
    url = migrated_database_url
    hours = [NOW - 6 * 24 * HOUR + i * HOUR for i in range(6 * 24 + 1)]
    silent = [t for t in hours if NOW - 72 * HOUR < t < NOW - HOUR]
    assert len(silent) == 70
    _store_on_time(url, "S-1", [(t, f"{100 + 0.01 * i:.3f}") for i, t in enumerate(hours) if t not in silent])
    for later in range(3):  # the round after the silence, and the next two
        assert vee_round(url, NOW + later * HOUR) is not None
    with psycopg.connect(url) as conn:
        estimated = conn.execute("SELECT ts FROM readings WHERE quality = 'estimated' ORDER BY ts").fetchall()
        largest = conn.execute("SELECT max(consumption_m3), sum(unknown) FROM consumption_hourly").fetchone()
    assert [t for (t,) in estimated] == silent
    assert largest == (Decimal("0.01"), 0)
