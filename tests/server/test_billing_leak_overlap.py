"""Determinants: a line's leaks and bursts lost their water once, however their alerts overlap.

Before, each alert's estimated volume was its rate over its whole span, and the CSV's
``leak_estimated_m3`` summed them: a 500 L/h burst for an hour during a 10 L/h leak of ten hours
was 0.600 m³ (0.100 + 0.500), the burst's hour counted in both, so a billing system adjusting by it
credited the overlap twice. Now each line has ``leak_estimated_m3`` (JSON and CSV): at each moment the
largest rate flowing, 0.590 m³, the per-alert list unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg
from hypothesis import given
from hypothesis import strategies as st
from psycopg.rows import dict_row

from server.billing import repository, service
from tests.server.test_billing_vee_issues import _setup

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
LEAK_FROM = datetime(2026, 10, 10, 0, tzinfo=UTC)


def _alert(conn: psycopg.Connection, alert_id: str, kind: str, start: datetime, end: datetime, rate: float) -> None:
    conn.execute(
        """
        INSERT INTO alerts (alert_id, kind, source, status, meter_id, dma, start, detected_at, last_seen, ended_at,
                            rate_l_h, volume_l, confidence, evidence)
        VALUES (%s, %s, 'detector', 'resolved', 'LK1', 'D1', %s, %s, %s, %s, %s, 0, 0.9, '[]')
        """,
        (alert_id, kind, start, start, end, end, rate),
    )


def test_a_burst_during_a_leak_is_counted_once_in_the_line_s_leak_water(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url) as conn:
        _setup(conn, "LK1", [(datetime(2026, 1, 1, tzinfo=UTC), None)])
        for h in range(-1, 24 * 32):
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('LK1', %s, %s)",
                (START + timedelta(hours=h), Decimal("100") + Decimal("0.01") * h),
            )
        _alert(conn, "leak/LK1", "leak", LEAK_FROM, LEAK_FROM + timedelta(hours=10), 10.0)
        _alert(conn, "burst/LK1", "burst", LEAK_FROM + timedelta(hours=4), LEAK_FROM + timedelta(hours=5), 500.0)
        # a second leak days later, on its own: its water adds
        later = LEAK_FROM + timedelta(days=5)
        _alert(conn, "leak2/LK1", "leak", later, later + timedelta(hours=2), 20.0)
        conn.commit()
    with psycopg.connect(migrated_database_url, row_factory=dict_row) as conn:
        rows = repository.determinant_lines(conn, START, END, "A-LK1", None, None)  # type: ignore[arg-type]
    (row,) = service.determinant_csv_rows(service.determinants(rows), START, END)
    assert row[service.DETERMINANT_COLUMNS.index("leak_estimated_m3")] == Decimal(
        "0.630"
    )  # the CSV summed the alerts: 0.640
    ((line,),) = [d.lines for d in service.determinants(rows)]
    assert [(leak.kind, leak.estimated_volume_m3) for leak in line.leaks] == [
        ("leak", Decimal("0.100")),
        ("burst", Decimal("0.500")),
        ("leak", Decimal("0.040")),
    ]  # each alert as before
    assert line.leak_estimated_m3 == Decimal("0.630")  # 9 h x 10 L + 1 h x 500 L + 2 h x 20 L, not 0.640
    assert line.model_dump(mode="json")["leak_estimated_m3"] == "0.630"  # exact, as every volume


def test_a_line_without_leaks_has_no_leak_water() -> None:
    assert service.leak_water_m3([]) is None


# Alerts on a minute grid: (first minute, minutes, rate in L/h to the millilitre).
spans = st.lists(
    st.tuples(
        st.integers(0, 600),
        st.integers(0, 300),
        st.decimals(min_value=0, max_value=5000, places=3, allow_nan=False, allow_infinity=False),
    ),
    max_size=6,
)
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _instants(alerts: list[tuple[int, int, Decimal]]) -> list[tuple[datetime, datetime, Decimal]]:
    return [(T0 + timedelta(minutes=a), T0 + timedelta(minutes=a + n), rate) for a, n, rate in alerts]


def _m3(litres: Decimal) -> Decimal:
    return (litres / 1000).quantize(Decimal("0.001"), ROUND_HALF_UP)


@given(spans)
def test_each_minute_counts_once_at_the_largest_rate_flowing(alerts: list[tuple[int, int, Decimal]]) -> None:
    """Against a minute-by-minute count: each minute some alert covers counts once, at the largest
    rate covering it; never more than the alerts' volumes summed, never less than the largest alone."""
    lost = service.leak_water_m3(_instants(alerts))
    if not alerts:
        assert lost is None
        return
    by_minute = [
        max((rate for a, n, rate in alerts if a <= minute < a + n), default=Decimal(0)) for minute in range(901)
    ]
    assert lost == _m3(sum(by_minute, Decimal(0)) / 60)  # litre-minutes, exact, divided once
    litre_minutes = [rate * n for _, n, rate in alerts]
    assert _m3(max(litre_minutes) / 60) <= lost <= _m3(sum(litre_minutes, Decimal(0)) / 60)


@given(spans, st.randoms(use_true_random=False))
def test_the_order_of_the_alerts_does_not_matter(alerts: list[tuple[int, int, Decimal]], rng) -> None:
    shuffled = list(alerts)
    rng.shuffle(shuffled)
    assert service.leak_water_m3(_instants(shuffled)) == service.leak_water_m3(_instants(alerts))


@given(spans.filter(bool), st.data())
def test_an_alert_within_another_at_no_higher_rate_adds_nothing(alerts: list[tuple[int, int, Decimal]], data) -> None:
    a, n, rate = data.draw(st.sampled_from(alerts))
    inner_from = data.draw(st.integers(a, a + n))
    inner_minutes = data.draw(st.integers(0, a + n - inner_from))
    inner_rate = data.draw(st.decimals(min_value=0, max_value=rate, places=3))
    with_inner = [*alerts, (inner_from, inner_minutes, inner_rate)]
    assert service.leak_water_m3(_instants(with_inner)) == service.leak_water_m3(_instants(alerts))


@given(
    st.lists(st.tuples(st.integers(1, 300), st.decimals(min_value=0, max_value=5000, places=3)), min_size=1, max_size=6)
)
def test_alerts_apart_lose_the_sum_of_their_volumes(alerts: list[tuple[int, Decimal]]) -> None:
    """One after another, never overlapping: the alerts' volumes summed, rounded once."""
    at, placed = 0, []
    for minutes, rate in alerts:
        placed.append((at, minutes, rate))
        at += minutes + 1
    assert service.leak_water_m3(_instants(placed)) == _m3(sum((rate * n for _, n, rate in placed), Decimal(0)) / 60)
