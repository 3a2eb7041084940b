"""A person's register value is refused exactly when it is out of order with the meter's measured
reads either side, and not confirmed (collector.vee.register_order, collector.vee.editing).

"Out of order", said plainly: below the read before it or above the read after it; where those two
already step back (a rollover, a meter replaced behind the same endpoint, a bad read), only a value
below the one before *and* above the one after, which would make that one step two. VEE's estimates
either side are no neighbours: they are estimated again around a person's value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.vee.editing import edit_reading, substitute_reading
from collector.vee.register_order import OutOfSequence, adds_a_step_back
from tests.collector.test_newest_read_max_flow import HOUR, vee_flags_over_max_flow

AT = datetime(2026, 11, 20, 10, tzinfo=UTC)
registers = st.decimals(min_value=0, max_value=Decimal("99999.999"), places=3)
maybe = st.one_of(st.none(), registers)


def out_of_order(before: Decimal | None, value: Decimal, after: Decimal | None) -> bool:
    below = before is not None and value < before
    above = after is not None and value > after
    if before is not None and after is not None and after < before:  # the neighbours step back already
        return below and above
    return below or above


@given(maybe, registers, maybe)
def test_a_value_adds_a_step_back_exactly_when_it_is_out_of_order(before, value, after) -> None:
    assert adds_a_step_back(before, value, after) is out_of_order(before, value, after)


@pytest.mark.parametrize(
    ("before", "value", "after", "refused"),
    [
        ("480.900", "1.000", "481.000", True),  # the walkthrough's typo
        ("480.900", "4809.370", "481.000", True),  # a digit too many
        ("480.900", "480.950", "481.000", False),
        ("480.900", "480.900", "481.000", False),  # an unchanged register is in order
        ("99999.900", "0.050", "0.100", False),  # a rollover between the neighbours: either side of it
        ("99999.900", "99999.950", "0.100", False),
        ("99999.900", "50000", "0.100", True),  # in the middle of it: two steps back
        ("481.000", "0.005", "0.010", False),  # the first read of a meter replaced behind the endpoint
        ("480.900", "481.000", "0", False),  # correcting a run of bad reads of 0, the first of them
        (None, "1.000", None, False),  # a meter's only read
    ],
)
def test_the_cases_a_person_meets(before, value, after, refused) -> None:
    neighbours = [None if v is None else Decimal(v) for v in (before, after)]
    assert adds_a_step_back(neighbours[0], Decimal(value), neighbours[1]) is refused


_meters = count()
#: who wrote a read of each quality, and why (a read not the meter's needs both)
WHO = {"actual": (None, None), "estimated": ("vee:linear", "gap"), "edited": ("Bo", "register photo")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=maybe,
    after=maybe,
    estimates=st.tuples(maybe, maybe),  # VEE's, between the neighbours and the read
    original=registers,
    value=registers,
    confirmed=st.booleans(),
    supplied=st.booleans(),  # a reading supplied over an estimate, rather than a correction
)
def test_a_person_s_value_is_refused_iff_out_of_order_with_its_measured_neighbours_and_not_confirmed(
    migrated_database_url, before, after, estimates, original, value, confirmed, supplied
) -> None:
    meter = f"P{next(_meters)}"
    rows = [
        (AT - timedelta(hours=2), before, "actual"),
        (AT - timedelta(hours=1), estimates[0], "estimated"),
        (AT, original, "estimated" if supplied else "actual"),
        (AT + timedelta(hours=1), estimates[1], "estimated"),
        (AT + timedelta(hours=2), after, "edited"),
    ]
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES (%s)", (meter,))
        for ts, volume, quality in rows:
            if volume is not None:
                conn.execute(
                    "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (meter, ts, volume, quality, *WHO[quality]),
                )
        conn.commit()
        stored = conn.execute("SELECT * FROM readings WHERE meter_id = %s ORDER BY ts", (meter,)).fetchall()
        write = substitute_reading if supplied else edit_reading
        refused = None
        try:
            with conn.transaction():
                write(conn, meter, AT, value, by="Ann", reason="photo", out_of_sequence_confirmed=confirmed)
        except OutOfSequence as error:
            refused = error
        # the meter's newest read is also held to its maximum flow from the read before it, as VEE holds
        # an interval (tests/collector/test_newest_read_max_flow.py)
        too_fast = after is None and before is not None and vee_flags_over_max_flow(before, AT - 2 * HOUR, value, AT)
        assert (refused is not None) is (not confirmed and (out_of_order(before, value, after) or too_fast))
        if refused is not None:
            assert refused.before is None or refused.before.volume_m3 == before
            assert refused.after is None or refused.after.volume_m3 == after
            assert (refused.before is None, refused.after is None) == (before is None, after is None)
            assert conn.execute("SELECT * FROM readings WHERE meter_id = %s ORDER BY ts", (meter,)).fetchall() == stored
        else:
            row = conn.execute("SELECT volume_m3, quality FROM readings WHERE meter_id = %s AND ts = %s", (meter, AT))
            assert row.fetchone() == (value, "substituted" if supplied else "edited")
        conn.commit()
