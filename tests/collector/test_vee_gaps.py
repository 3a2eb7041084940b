"""VEE rounds and the gaps they estimate: a gap reaching back before a round's two days, and a
late read landing inside a gap an earlier round had estimated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from collector.vee.rounds import vee_round

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _store_on_time(url: str, meter: str, reads: list[tuple[datetime, str]]) -> None:
    """Reads as they would have arrived on time (``received_at`` their own time): none is late. The
    meter is hourly, as the rounds while it read found it (``meters.read_interval_s``): a meter whose
    interval VEE never found has no gaps until it does (test_vee_new_meter.py)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO meters (meter_id, registered, read_interval_s) VALUES (%s, true, 3600) ON CONFLICT DO NOTHING",
            (meter,),
        )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as cp:
            for t, v in reads:
                cp.write_row((meter, t, v, t))


def _silent(url: str, days: int, rise_m3: float | None = None) -> tuple[datetime, datetime]:
    """Hourly meter S-1 read for two days up to ``stop``, silent ``days`` days, then read at ``back``
    (two hours before NOW) and an hour later, all on time. Its register rose 10 L an hour all along,
    or by ``rise_m3`` over the silence. (stop, back)."""
    back = NOW - 2 * HOUR
    stop = back - days * 24 * HOUR
    before = [stop - i * HOUR for i in range(48, -1, -1)]
    _store_on_time(url, "S-1", [(t, f"{100 + 0.01 * i:.3f}") for i, t in enumerate(before)])
    after = [100.48 + (0.01 * (days * 24 + k) if rise_m3 is None else rise_m3 + 0.01 * k) for k in range(2)]
    _store_on_time(url, "S-1", [(back + k * HOUR, f"{volume:.3f}") for k, volume in enumerate(after)])
    return stop, back


def _arrives_late(url: str, ts: datetime, volume: str) -> None:
    """S-1's read at ``ts`` is received now, and noted as late (``late_readings``)."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('S-1', %s, %s)", (ts, volume))
        conn.execute("INSERT INTO late_readings (since) VALUES (%s)", (ts,))


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


def test_a_late_read_inside_an_estimated_gap_replaces_all_of_the_gap_s_estimates(migrated_database_url):
    """A 6-hour gap three days back, estimated (linear: 100.897 … 101.603 m³ between 100.720 and
    101.780) by the round after it. A real read from inside it, stamped 16:00:07, arrives three days
    late and is noted; the round reaching back to it starts 1 µs before it. Before, it deleted only
    the estimates after the read: LO's real 100.735 stood after estimates of up to 101.250 and was
    judged a bad_read (billing took the estimate 7 s before it as the closing register), HI's real
    101.740 was flagged over_max_flow (0.490 m³ in 7 s: the bill line incomplete). Now the gap is
    estimated afresh around the read, and the read's own slot, 16:00, gets no estimate."""
    url = migrated_database_url
    opened = NOW - 3 * 24 * HOUR  # the last read before the outage
    hours = [NOW - 6 * 24 * HOUR + i * HOUR for i in range(6 * 24)]
    late_t = opened + 3 * HOUR + timedelta(seconds=7)
    shapes = {  # the register's rise over the gap's hours: little early, or most of it in the first
        "LO": ["0", "0.005", "0.010", "0.015", "0.020", "0.025", "1.060"],
        "HI": ["0", "1.000", "1.010", "1.020", "1.030", "1.040", "1.060"],
    }

    def volume(meter: str, t: datetime) -> Decimal:
        i, g = int((t - hours[0]) / HOUR), int((opened - hours[0]) / HOUR)
        if t <= opened:
            return Decimal("100") + Decimal("0.010") * i
        inside = Decimal(shapes[meter][min(i - g, 6)])
        return Decimal("100") + Decimal("0.010") * g + inside + Decimal("0.010") * max(i - g - 6, 0)

    for meter in shapes:
        _store_on_time(url, meter, [(t, str(volume(meter, t))) for t in hours if not opened < t < opened + 6 * HOUR])
    assert vee_round(url, opened + 7 * HOUR) is not None  # the round after the gap estimates it: five hours
    with psycopg.connect(url) as conn:
        first = conn.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
    assert first == (10,)
    with psycopg.connect(url) as conn:
        for meter in shapes:  # the read 3 h into the gap arrives now, three days late, and is noted
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)",  # received now()
                (meter, late_t, volume(meter, opened + 3 * HOUR)),
            )
        conn.execute("INSERT INTO late_readings (since) VALUES (%s)", (late_t,))
    assert vee_round(url, NOW) is not None
    with psycopg.connect(url) as conn:
        for meter in shapes:
            rows = conn.execute(
                "SELECT ts, volume_m3, quality FROM readings WHERE meter_id = %s AND ts > %s AND ts < %s ORDER BY ts",
                (meter, opened, opened + 6 * HOUR),
            ).fetchall()
            flags = conn.execute(
                "SELECT rule FROM vee_flags WHERE meter_id = %s AND ts > %s AND ts <= %s",
                (meter, opened, opened + 6 * HOUR),
            ).fetchall()
            real = volume(meter, opened + 3 * HOUR)
            before = [v for t, v, q in rows if t < late_t]
            # (the read at 16:00:07 stands for 16:00: no estimate 7 s before it, as there was)
            assert [q for _, _, q in rows] == ["estimated"] * 2 + ["actual"] + ["estimated"] * 2, meter
            assert all(volume(meter, opened) <= v <= real for v in before), (meter, before)
            registers = [v for _, v, _ in rows]
            assert registers == sorted(registers), meter
            assert sorted(rule for (rule,) in flags) == ["gap", "gap"], (meter, flags)  # both halves estimated


def test_a_late_read_in_a_gap_opening_before_the_look_back_leaves_the_estimates_it_cannot_redo(
    migrated_database_url,
):
    """A 35-day silence, estimated whole by a run over it; then a read from its 30th day arrives
    late. The round reaching back to it loads 28 days before it: the gap's opening read is not
    among them, so the round cannot estimate the gap again, and must not delete the estimates it
    cannot redo (the 28 days before the read would be left with none)."""
    from collector.vee.runner import run_vee

    url = migrated_database_url
    opened = NOW - 40 * 24 * HOUR
    closed = opened + 35 * 24 * HOUR
    _store_on_time(url, "L-1", [(opened - HOUR, "100.000"), (opened, "100.010"), (closed, "108.410")])
    with psycopg.connect(url) as conn:
        run_vee(conn, opened, closed + HOUR, now=closed + HOUR)
        late_t = opened + 30 * 24 * HOUR + timedelta(seconds=7)  # beside the estimate on the hour
        before = conn.execute(
            "SELECT count(*) FROM readings WHERE quality = 'estimated' AND ts < %s", (late_t,)
        ).fetchone()
        conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('L-1', %s, 107.210)", (late_t,))
        conn.commit()
        run_vee(conn, late_t - timedelta(microseconds=1), closed + HOUR, now=closed + HOUR)
        after = conn.execute(
            "SELECT count(*) FROM readings WHERE quality = 'estimated' AND ts < %s", (late_t,)
        ).fetchone()
    # all but the one at the read's own slot, 7 s before it (test_…_takes_its_slot_from_the_estimate)
    assert before == (30 * 24,) and after == (30 * 24 - 1,)


@pytest.mark.parametrize("silent_days", [29, 40, 61, 70])
def test_a_gap_opening_before_the_look_back_is_estimated_whole_or_flagged(migrated_database_url, silent_days):
    """An hourly meter silent for longer than the round's look-back (28 days and its own 2) comes
    back. The round loaded no read from before the look-back, so the gap had no opening read: a
    40-day silence was neither estimated nor flagged (estimates 0, gaps_not_estimated 0, no flag).
    Now its last read before the load is loaded too: the gap is estimated whole up to 62 days
    (``max_estimated_gap_s``), and flagged for a person beyond."""
    url = migrated_database_url
    _, back = _silent(url, silent_days)
    report = vee_round(url, NOW)
    assert report is not None
    with psycopg.connect(url) as conn:
        flags = conn.execute("SELECT ts, detail FROM vee_flags WHERE rule = 'gap'").fetchall()
        estimated = conn.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
    assert [t for t, _ in flags] == [back]
    if silent_days <= 62:
        assert (report["estimates"], report["gaps_not_estimated"]) == (silent_days * 24 - 1, 0)
        assert estimated == (silent_days * 24 - 1,)
        assert flags[0][1].endswith("; estimated")
    else:
        assert (report["estimates"], report["gaps_not_estimated"]) == (0, 1)
        assert estimated == (0,)
        assert "not estimated" in flags[0][1]


def _gap_flags(url: str) -> list[tuple[datetime, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT ts, detail FROM vee_flags WHERE rule = 'gap' ORDER BY ts").fetchall()


def test_a_gap_stays_flagged_while_its_estimates_stand_and_goes_when_its_reads_come(migrated_database_url):
    """An hourly meter missing 3 reads (09:00 to 11:00, 10 L an hour), well inside a round's two
    days. The round after it flagged the closing read at 12:00 ``gap`` (4.0 h) and estimated the 3
    hours; the next round (every hour, each over the last two days) found the gap filled, no gap,
    and deleted the flag: 1 flag, then 0, and the API's reads, an auditor and billing lost the
    record that the meter missed them. Now the gap is judged between the meter's measured reads, so
    it stays flagged, as "; estimated", as long as its estimates stand; a late read at 10:00:07 splits
    it into two gaps estimated afresh, each flagged, and once all its reads have come the flag goes."""
    url = migrated_database_url
    hours = [NOW - 48 * HOUR + i * HOUR for i in range(48)]
    missing = [NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR]
    reads = {t: f"{100 + 0.01 * i:.3f}" for i, t in enumerate(hours)}
    _store_on_time(url, "G-1", [(t, v) for t, v in reads.items() if t not in missing])
    closing = NOW  # (the meter's read at NOW, the 4-hour step's end)
    _store_on_time(url, "G-1", [(closing, "100.480")])
    flagged = [(closing, "4.0 h since the previous read; estimated")]
    for later in range(3):  # the round after the gap, and the next two
        assert vee_round(url, NOW + HOUR + later * HOUR) is not None
        assert _gap_flags(url) == flagged, later
    with psycopg.connect(url) as conn:
        estimated = conn.execute("SELECT ts FROM readings WHERE quality = 'estimated' ORDER BY ts").fetchall()
    assert [t for (t,) in estimated] == missing

    def arrive(times: list[datetime]) -> None:
        with psycopg.connect(url) as conn:  # received now, after the estimates
            for t in times:
                conn.execute(
                    "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('G-1', %s, %s)",
                    (t + timedelta(seconds=7), reads[t]),
                )

    arrive(missing[1:2])  # 10:00:07: two gaps, of 2 h each, one estimate each
    for later in range(2):
        assert vee_round(url, NOW + 4 * HOUR + later * HOUR) is not None
        assert _gap_flags(url) == [
            (missing[1] + timedelta(seconds=7), "2.0 h since the previous read; estimated"),
            (closing, "2.0 h since the previous read; estimated"),
        ], later
    arrive([missing[0], missing[2]])  # the gap closes: no estimate is left, nor a flag
    for later in range(2):
        assert vee_round(url, NOW + 6 * HOUR + later * HOUR) is not None
        assert _gap_flags(url) == [], later
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
    assert left == (0,)


def test_a_gap_opening_before_the_look_back_stays_flagged_at_the_next_round(migrated_database_url):
    """A 40-day silence, estimated whole by the round after it (test above): the next round loads 28
    days of its estimates but not the read that opened it, so it cannot judge the gap, and found
    the closing read an hour after an estimate: no gap, its flag deleted. It keeps the flag now."""
    url = migrated_database_url
    _, back = _silent(url, 40)
    assert vee_round(url, NOW) is not None
    flags = _gap_flags(url)
    assert [(t, detail.endswith("; estimated")) for t, detail in flags] == [(back, True)]
    for later in range(1, 3):
        assert vee_round(url, NOW + later * HOUR) is not None
        assert _gap_flags(url) == flags, later


def test_a_late_read_in_a_gap_opening_before_the_look_back_is_flagged_as_closing_its_part(migrated_database_url):
    """A 40-day silence, estimated whole by the round after it; then the meter's read from its 30th
    day (720 h after the silence began, 240 h before it ended) arrives late and is noted. The round
    reaching back to it loads 28 days before it: estimates only, the gap's opening read not among
    them. It estimates the part after the read afresh (flagged at the closing read, 240 h) and
    leaves the estimates before it, which it cannot redo; but the late read itself was judged
    against the estimate 7 s before it (at 10:00, its own slot) and flagged nothing, so no read's ``vee_flags`` said the
    meter had missed the 720 hours before it. Now its step from the meter's last measured read,
    looked up, makes it a gap VEE filled: flagged ``gap`` "720.0 h …; estimated", and kept so."""
    url = migrated_database_url
    stop, back = _silent(url, 40)
    assert vee_round(url, NOW) is not None
    late_t = stop + 30 * 24 * HOUR + timedelta(seconds=7)
    estimated_before = "SELECT count(*) FROM readings WHERE quality = 'estimated' AND ts < %s"
    _arrives_late(url, late_t, f"{100.48 + 0.01 * 30 * 24:.3f}")
    with psycopg.connect(url) as conn:
        kept = conn.execute(estimated_before, (late_t - HOUR,)).fetchone()  # (to 09:00: test below for 10:00)
    flagged = [
        (late_t, "720.0 h since the previous read; estimated"),
        (back, "240.0 h since the previous read; estimated"),
    ]
    gap_counts = []
    for later in range(1, 3):  # the round that reaches back to the read, and the next
        report = vee_round(url, NOW + later * HOUR)
        assert report is not None
        assert _gap_flags(url) == flagged, later
        gap_counts.append(report["flags"]["gap"])
    assert gap_counts == [2, 1]  # (the late read is behind the second round's period)
    with psycopg.connect(url) as conn:
        left = conn.execute(estimated_before, (late_t - HOUR,)).fetchone()
    assert left == kept  # (those before the read stand)


def test_a_late_read_in_a_gap_opening_before_the_look_back_takes_its_slot_from_the_estimate(migrated_database_url):
    """The late read of the test above, stamped 10:00:07 on the silence's 30th day: the estimate on
    10:00 is at the slot the read stands for. The round deleted such an estimate only when both
    measured reads around it were loaded, and the silence's opening read was not: the estimate
    stood 7 s before the meter's own read of the hour, for good. Now it goes (``vee:read-slot``)."""
    url = migrated_database_url
    stop, _ = _silent(url, 40)
    assert vee_round(url, NOW) is not None
    slot = stop + 30 * 24 * HOUR
    late_t = slot + timedelta(seconds=7)
    _arrives_late(url, late_t, f"{100.48 + 0.01 * 30 * 24:.3f}")
    assert vee_round(url, NOW + HOUR) is not None
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT ts, quality FROM readings WHERE ts >= %s AND ts <= %s ORDER BY ts", (slot - HOUR, late_t)
        ).fetchall()
        history = conn.execute(
            "SELECT ts, superseded_by FROM reading_history WHERE quality = 'estimated' AND ts < %s", (late_t,)
        ).fetchall()
    assert rows == [(slot - HOUR, "estimated"), (late_t, "actual")]
    assert history == [(slot, "vee:read-slot")]


def test_a_gap_opening_before_the_look_back_over_its_allowance_stays_over_max_flow(migrated_database_url):
    """A 40-day silence (960 hours) on a 5 m³/h meter whose register rose 5040.009 m³, 9 L over the
    5040 m³ the meter passes at its maximum flow and 5 % (``max_flow_slack``): the round after it
    flags the closing read over_max_flow and estimates the gap linearly, 5.250 m³ to the litre in
    its last hour. The next round loads 28 days of estimates, not the read that opened the gap, and
    judged the closing read on its last hour: within 5.25 m³, its flag deleted. It keeps it now."""
    url = migrated_database_url
    _, back = _silent(url, 40, rise_m3=5040.009)

    def flags() -> list[tuple[datetime, str]]:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT ts, detail FROM vee_flags WHERE rule = 'over_max_flow' ORDER BY ts").fetchall()

    assert vee_round(url, NOW) is not None
    first = flags()
    assert first == [(back, "5040.009 m³ in 960.00 h exceeds 5 m³/h")]
    for later in range(1, 3):
        assert vee_round(url, NOW + later * HOUR) is not None
        assert flags() == first, later


@pytest.mark.parametrize("glitch_m3", ["0.000", "9999.000"])
def test_a_glitch_read_opening_a_gap_before_the_look_back_is_judged_with_the_read_before_it(
    migrated_database_url, glitch_m3
):
    """An hourly meter at 1234.500 m³ reads 0.000 (or 9999.000) once, a glitch, then is silent 40
    days and comes back at 1235.460 m³. Within the look-back the glitch is a bad_read (the next read
    is back at the level before it) and the gap after it is left for a person, its water counted
    from the read before the glitch. Before the look-back the round loaded the glitch alone, without
    the read before it: no bad_read, and the gap after 0.000 was estimated up to 1235.460, 1235 m³
    of water in 40 days that the meter never measured; the read after 9999.000 was flagged
    register_backwards, its water unknown."""
    url = migrated_database_url
    back = NOW - 2 * HOUR
    glitch = back - 40 * 24 * HOUR
    before = [glitch - i * HOUR for i in range(48, 0, -1)]
    _store_on_time(url, "S-1", [(t, f"{1234.02 + 0.01 * i:.3f}") for i, t in enumerate(before)])
    _store_on_time(url, "S-1", [(glitch, glitch_m3)])
    _store_on_time(url, "S-1", [(back + k * HOUR, f"{1234.5 + 0.96 + 0.01 * k:.3f}") for k in range(2)])
    for later in range(2):
        assert vee_round(url, NOW + later * HOUR) is not None
        with psycopg.connect(url) as conn:
            estimated = conn.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
            steps = conn.execute("SELECT rule FROM vee_flags WHERE rule <> 'gap'").fetchall()
        assert estimated == (0,), later
        assert steps == [], later  # (the closing read is no register step: it is back where the meter was)
        assert _gap_flags(url) == [
            (back, "960.0 h since the previous read; not estimated (a register step, or too long)")
        ]
