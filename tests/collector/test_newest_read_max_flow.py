"""A person's value for a meter's newest read is held to the meter's maximum flow, as VEE holds it.

The walkthrough's other typo: 4809.37 for 480.937 on the meter's newest read. It is in order (there is
no read after it to be above), so it was stored; VEE then flagged the interval ``over_max_flow`` and
detection could take it for a burst. A value with no measured read after it is now refused
(:class:`FasterThanTheMeter`, a 409 through the API) exactly when VEE's ``over_max_flow`` rule would
flag the interval from the measured read before it: the meter's own maximum flow, or VEE's default
where none is recorded, with ``max_flow_slack``. Confirmed, it is stored as a person means it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.editing import edit_reading, substitute_reading
from collector.vee.register_order import FasterThanTheMeter, MaxFlow, Neighbour, faster_than_the_meter
from collector.vee.rules import validate
from collector.vee.series import Series

AT = datetime(2026, 11, 20, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
CONFIG = VeeConfig()
registers = st.decimals(min_value=0, max_value=Decimal("99999.999"), places=3)
max_flows = st.decimals(min_value=Decimal("0.1"), max_value=Decimal("5000"), places=1)
#: from a second to two months: the reads a person corrects are hourly, daily or a site visit's
spans = st.integers(min_value=1, max_value=62 * 86400).map(lambda s: timedelta(seconds=s))


def vee_flags_over_max_flow(
    before: Decimal, before_ts: datetime, value: Decimal, ts: datetime, max_flow_m3h: float | None = None
) -> bool:
    """Whether VEE's rules (collector.vee.rules.validate), run over the two reads, flag the second
    ``over_max_flow``: the oracle, VEE itself."""
    series = Series.from_arrays(
        ["M"],
        np.zeros(2, dtype=np.int64),
        np.array([before_ts.timestamp(), ts.timestamp()]),
        np.array([float(before), float(value)]),
        CONFIG,
        max_flow=None if max_flow_m3h is None else np.full(2, max_flow_m3h),
    )
    return bool(validate(series, CONFIG, now=ts.timestamp()).masks["over_max_flow"][1])


@given(before=registers, rise=registers, span=spans, recorded=st.one_of(st.none(), max_flows))
def test_a_newest_read_is_faster_than_the_meter_exactly_when_vee_flags_it_over_max_flow(
    before, rise, span, recorded
) -> None:
    """For a value at or above the read before it: one below is out of order, refused before its flow
    is looked at (VEE would count a step back as a replacement's or a rollover's water)."""
    value = before + rise
    limit = MaxFlow.of(recorded, CONFIG)
    judged = faster_than_the_meter(Neighbour(AT - span, before, "actual"), AT, value, limit, CONFIG)
    assert judged is vee_flags_over_max_flow(before, AT - span, value, AT, limit.m3h)


@pytest.mark.parametrize(
    ("value", "recorded", "refused"),
    [
        ("4809.370", None, True),  # the walkthrough's typo: 4,328 m³ in an hour
        ("480.937", None, False),  # what was meant
        ("485.900", None, False),  # 5 m³ in the hour: the default 5 m³/h, within its slack
        ("486.200", None, True),  # 5.3 m³: over 5 m³/h with its 5 %
        ("486.200", "40", False),  # a DN50 meter's 40 m³/h passes it
        ("4809.370", "5000", False),  # and a meter that passes 5000 m³/h the typo
    ],
)
def test_the_cases_a_person_meets(value, recorded, refused) -> None:
    before = Neighbour(AT - HOUR, Decimal("480.900"), "actual")
    limit = MaxFlow.of(None if recorded is None else Decimal(recorded), CONFIG)
    assert faster_than_the_meter(before, AT, Decimal(value), limit, CONFIG) is refused


@pytest.mark.parametrize(
    ("gap", "said"),
    [(timedelta(seconds=1), "over 1 s,"), (timedelta(minutes=15), "over 15 min,"), (HOUR, "over 1 h,"),
     (timedelta(days=2, hours=3), "over 2 d 3 h,")],
)  # fmt: skip
def test_the_refusal_says_the_time_since_the_read_before_as_a_clerk_reads_it(gap: timedelta, said: str) -> None:
    """A second's gap was said "over 0.000277778 h"."""
    before = Neighbour(AT - gap, Decimal("480.900"), "actual")
    refusal = FasterThanTheMeter("M-1", AT, Decimal("4809.370"), before, MaxFlow.of(None, CONFIG))
    assert said in str(refusal), str(refusal)


_meters = count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=registers,
    value=registers,
    recorded=st.one_of(st.none(), max_flows),
    estimate=st.booleans(),  # VEE's estimate between the read before and the newest: no neighbour
    later=st.booleans(),  # a measured read after it: the value is no longer the newest
    confirmed=st.booleans(),
    supplied=st.booleans(),
)
def test_a_newest_read_is_refused_iff_vee_would_flag_it_and_it_is_not_confirmed(
    migrated_database_url, before, value, recorded, estimate, later, confirmed, supplied
) -> None:
    meter = f"F{next(_meters)}"
    value = max(value, before)  # in order with the read before it: only the flow is in question
    after = Decimal("99999.999")  # above any value: in order
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id, max_flow_m3h) VALUES (%s, %s)", (meter, recorded))
        rows: list[tuple[datetime, Decimal, str, str | None, str | None]] = [
            (AT - 2 * HOUR, before, "actual", None, None)
        ]
        if estimate:
            rows.append((AT - HOUR, before, "estimated", "vee:linear", "gap"))
        if not supplied:
            rows.append((AT, before, "actual", None, None))
        if later:
            rows.append((AT + HOUR, after, "actual", None, None))
        for read in rows:
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (meter, *read),
            )
        conn.commit()
        stored = conn.execute("SELECT * FROM readings WHERE meter_id = %s ORDER BY ts", (meter,)).fetchall()
        write = substitute_reading if supplied else edit_reading
        refused = None
        try:
            with conn.transaction():
                write(conn, meter, AT, value, by="Ann", reason="photo", out_of_sequence_confirmed=confirmed)
        except FasterThanTheMeter as error:
            refused = error
        limit = CONFIG.default_max_flow_m3h if recorded is None else float(recorded)
        too_fast = vee_flags_over_max_flow(before, AT - 2 * HOUR, value, AT, limit)
        assert (refused is not None) is (not confirmed and not later and too_fast)
        if refused is not None:
            assert refused.before is not None and refused.before.volume_m3 == before and refused.after is None
            assert refused.max_flow == MaxFlow.of(recorded, CONFIG)
            assert str(refused).startswith(f"a register of {value} m³ for {meter!r} at 2026-11-20T10:00:00Z is ")
            assert conn.execute("SELECT * FROM readings WHERE meter_id = %s ORDER BY ts", (meter,)).fetchall() == stored
        else:
            row = conn.execute("SELECT volume_m3, quality FROM readings WHERE meter_id = %s AND ts = %s", (meter, AT))
            assert row.fetchone() == (value, "substituted" if supplied else "edited")
        conn.commit()
