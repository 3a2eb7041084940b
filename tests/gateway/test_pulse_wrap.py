"""A pulse module's count to the published register: wraps, restarts at 0 and steps back, judged by
the water the meter could have passed since the previous read; the state kept across gateway restarts."""

from __future__ import annotations

import math
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import assume, given, settings, target
from hypothesis import strategies as st

from gateway.config import MeterConfig
from gateway.modbus_read import to_reading
from gateway.profiles import ProfileBook
from gateway.pulse import DEFAULT_MAX_FLOW_M3H, PulseWrap
from gateway.spool import _MIGRATIONS, Spool
from gateway.transport import PollError

T0 = datetime(2026, 12, 5, 12, tzinfo=UTC)
SPAN = 2**32


def meter(litres_per_pulse: str | float = 0.1, **more: object) -> MeterConfig:
    return MeterConfig("P-1", 1, "pulse_counter", {"litres_per_pulse": litres_per_pulse, **more})


def publish(book: ProfileBook, m: MeterConfig, count: int, at: datetime) -> float:
    """What the gateway publishes for the module's count read at ``at`` (registers as on the wire)."""
    registers = [count % SPAN >> 16, count % 2**16]
    return to_reading(m, book.profile(m), registers, at, "modbus-tcp", "bus-1", book.volume_filter(m)).volume_m3


def test_a_module_restarting_at_zero_in_the_top_quarter_carries_on_from_the_last_register() -> None:
    """3.3e9 → 0 at 0.1 L a pulse, one minute apart, was taken for a wrap: +99,496.7 m³ that never
    flowed, kept for good. A restart: the register carries on from the last one published."""
    book, m = ProfileBook(), meter()
    assert publish(book, m, 3_300_000_000, T0) == 330_000.0
    assert publish(book, m, 3_300_000_020, T0 + timedelta(minutes=1)) == 330_000.002
    assert publish(book, m, 0, T0 + timedelta(minutes=2)) == 330_000.002
    assert publish(book, m, 20, T0 + timedelta(minutes=3)) == 330_000.004


def test_a_step_back_just_after_a_wrap_adds_no_span() -> None:
    """A real wrap, then the count 8 pulses back across 0: a whole span (+429,496.7 m³) was added."""
    book, m = ProfileBook(), meter()
    assert publish(book, m, SPAN - 10, T0) == pytest.approx(429_496.7286)
    assert publish(book, m, 5, T0 + timedelta(minutes=1)) == pytest.approx(429_496.7301)  # wrapped
    assert publish(book, m, SPAN - 3, T0 + timedelta(minutes=2)) == pytest.approx(429_496.7293)  # 0.8 L back
    assert publish(book, m, 30, T0 + timedelta(minutes=3)) == pytest.approx(429_496.7326)


def test_a_restart_after_a_wrap_keeps_the_register_and_survives_a_gateway_restart(tmp_path: Path) -> None:
    """After a real wrap, a module restart left the register at one span (429,496.73 m³) whatever it
    had counted: neither near zero (VEE's replacement) nor where it was. Now it carries on, and a
    gateway restart in between judges the next count against the state kept in the spool."""
    spool = Spool(tmp_path / "s.sqlite")
    book, m = ProfileBook(spool), meter()
    publish(book, m, SPAN - 10, T0)
    publish(book, m, 5, T0 + timedelta(minutes=1))
    at_500k = publish(book, m, 500_000, T0 + timedelta(hours=2))  # 50 m³ in two hours
    assert at_500k == pytest.approx(429_546.7296)
    assert publish(book, m, 0, T0 + timedelta(hours=2, minutes=1)) == pytest.approx(at_500k)  # restarted
    spool.close()
    spool = Spool(tmp_path / "s.sqlite")
    again = ProfileBook(spool)
    assert publish(again, m, 20, T0 + timedelta(hours=2, minutes=2)) == pytest.approx(at_500k + 0.002)
    spool.close()


def test_a_count_going_back_a_little_is_published_as_it_is() -> None:
    book, m = ProfileBook(), meter()
    publish(book, m, 3_300_000_020, T0)
    assert publish(book, m, 3_300_000_010, T0 + timedelta(minutes=1)) == 330_000.001


def test_a_wrap_after_a_long_outage_needs_a_meter_able_to_pass_that_water() -> None:
    """The implied advance across the wrap must fit the maximum flow over the time between reads:
    10,000 m³ in a minute is no wrap but a restart of a module that has counted 0.5 m³ since."""
    book, m = ProfileBook(), meter(litres_per_pulse=1)
    top = SPAN - 5_000_000  # 5,000 m³ below the top of the 4,294,967 m³ span
    publish(book, m, top, T0)
    assert publish(book, m, 500, T0 + timedelta(minutes=1)) == pytest.approx(top / 1000)  # restart: no span
    wrapped = ProfileBook()
    publish(wrapped, m, top, T0)
    # 5,000.5 m³ in 51 hours: under 100 m³/h, a wrap
    assert publish(wrapped, m, 500, T0 + timedelta(hours=51)) == pytest.approx(SPAN / 1000 + 0.5)
    slow = meter(litres_per_pulse=1, max_flow_m3h=50)  # the meter's own bound: no wrap in 51 hours
    book50 = ProfileBook()
    publish(book50, slow, top, T0)
    assert publish(book50, slow, 500, T0 + timedelta(hours=51)) == pytest.approx(top / 1000)


def test_a_step_back_below_anything_counted_is_a_failed_read() -> None:
    book, m = ProfileBook(), meter()
    publish(book, m, 5, T0)
    with pytest.raises(PollError, match="stepped back past 0"):
        publish(book, m, SPAN - 3, T0 + timedelta(minutes=1))
    assert publish(book, m, 30, T0 + timedelta(minutes=2)) == 0.003  # judged against the count before


def test_an_earlier_versions_wraps_are_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    # a row as the earlier version wrote it (it kept no time of the last read)
    spool._db.execute("INSERT INTO pulse_wraps (meter_id, last_m3, wraps) VALUES ('P-1', 10.0, 2)")
    wrap = PulseWrap("P-1", 100.0, spool)
    assert wrap.unwrap(10.0, T0) == 210.0
    assert wrap.unwrap(10.5, T0 + timedelta(minutes=1)) == 210.5
    spool.close()


# The spool's tables as commit 65273a0 ("Pulse counters: a fall of the count is a wrap only if the
# meter could have passed that water") created them: pulse_state without count_m3, which ea52fa8 added.
SPOOL_65273A0 = """
CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, batch_seq INTEGER);
CREATE INDEX readings_by_batch ON readings (batch_seq, id);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters (name, value) VALUES ('next_batch_seq', 1);
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE pulse_wraps (meter_id TEXT PRIMARY KEY, last_m3 REAL NOT NULL, wraps INTEGER NOT NULL);
CREATE TABLE pulse_state (
    meter_id TEXT PRIMARY KEY, last_m3 REAL NOT NULL, offset_m3 REAL NOT NULL, last_at TEXT NOT NULL
);
CREATE TABLE wmbus_freshness (
    meter_id TEXT NOT NULL, device TEXT NOT NULL, message_counter INTEGER, meter_time TEXT,
    PRIMARY KEY (meter_id, device)
);
CREATE TABLE meter_health (
    meter_id TEXT PRIMARY KEY, last_good TEXT, offline_since TEXT, consecutive_failures INTEGER NOT NULL
);
"""


def test_a_spool_from_65273a0_keeps_its_pulse_counters_counting(tmp_path: Path) -> None:
    """``CREATE TABLE IF NOT EXISTS`` left that spool's pulse_state without count_m3, and every poll
    of every pulse counter failed for good ("no such column: count_m3"). The spool now adds the
    column; the state kept without it is taken at the meter's present litres_per_pulse (as an earlier
    version's pulse_wraps are), and a second opening changes nothing."""
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(SPOOL_65273A0)
        old.execute("INSERT INTO readings (body) VALUES ('{}')")
        old.execute("INSERT INTO pulse_state VALUES ('P-1', 1000.0, 5.0, ?)", (T0.isoformat(),))
    old.close()
    spool = Spool(path)
    assert spool.depth() == 1
    assert publish(ProfileBook(spool), meter(), 10_000_000, T0 + timedelta(minutes=1)) == 1005.0  # 1000 m3 + 5
    spool.close()
    again = Spool(path)  # migrated once: the state is kept with its count_m3 from now on
    assert again._db.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS)
    assert publish(ProfileBook(again), meter(), 10_000_010, T0 + timedelta(minutes=2)) == 1005.001
    again.close()


_PULSES = st.integers(0, 2**30 - 1) | st.integers(2**30 - 2**27, 2**30 - 1)


@settings(max_examples=100, deadline=None)
@given(
    litres_per_pulse=st.sampled_from(["0.1", "1", "2.5", "10", "100"]),
    start=st.integers(0, SPAN - 1) | st.integers(SPAN - 2**30, SPAN - 1),
    # up to just under a quarter span between reads, often near it: the count wraps every few reads
    steps=st.lists(st.tuples(_PULSES, st.booleans()), min_size=1, max_size=25),
)
def test_counts_the_meter_could_pass_unwrap_to_every_pulse(
    litres_per_pulse: str, start: int, steps: list[tuple[int, bool]]
) -> None:
    """Read far enough apart for the water counted to fit the meter's maximum flow, the unwrapped
    register is every pulse counted since the first read, times litres per pulse, whatever the wraps
    and gateway restarts (the state kept in the spool) between reads."""
    m = meter(litres_per_pulse)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "s.sqlite"
        spool = Spool(path)
        book = ProfileBook(spool)
        count, at = start, T0
        previous = publish(book, m, count, at)
        wraps = 0
        for pulses, restart in steps:
            if restart:  # the gateway restarts: what it knew is the spool's
                spool.close()
                spool = Spool(path)
                book = ProfileBook(spool)
            count += pulses
            wraps += (count - pulses) % SPAN > count % SPAN
            m3 = Decimal(pulses) * Decimal(litres_per_pulse) / 1000
            at += timedelta(hours=math.ceil(m3 / DEFAULT_MAX_FLOW_M3H) + 1)
            unwrapped = publish(book, m, count, at)
            expected = float(Decimal(count) * Decimal(litres_per_pulse) / 1000)
            assert math.isclose(unwrapped, expected, rel_tol=1e-12), (count, unwrapped, expected)
            assert unwrapped >= previous
            previous = unwrapped
        target(float(wraps), label="wraps")
        spool.close()


@settings(max_examples=100, deadline=None)
@given(
    before=st.integers(1, SPAN - 1),
    after=st.integers(0, 10_000),
    minutes=st.integers(1, 60),
)
def test_a_module_counting_again_from_zero_adds_only_what_it_counted(before: int, after: int, minutes: int) -> None:
    """A restart to a count the meter could have passed since the previous read, from anywhere but
    within that much of the top of the span (a wrap) or above the new count (a step back), adds that
    count to the register and no span."""
    book, m = ProfileBook(), meter(0.1)
    allowed_pulses = float(DEFAULT_MAX_FLOW_M3H) * minutes / 60 * 1.05 * 10_000
    assume(before - after > allowed_pulses + 1)  # no step back
    assume(SPAN - before + after > allowed_pulses + 1)  # no wrap
    published = publish(book, m, before, T0)
    assert publish(book, m, after, T0 + timedelta(minutes=minutes)) == pytest.approx(published + after / 10_000)


@pytest.mark.parametrize("bad", [0, -5, "fast", True, "nan"])
def test_a_bad_max_flow_is_refused_when_the_configuration_loads(bad: object) -> None:
    from gateway.config import parse_config_text
    from tests.gateway.helpers import toml_value

    parameters = toml_value({"litres_per_pulse": 1, "max_flow_m3h": bad})
    text = CONFIG.format(profile="pulse_counter", parameters=parameters)
    with pytest.raises(ValueError, match="max_flow_m3h"):
        parse_config_text(text)


U16_PULSE = """name = "u16_pulse"
[[blocks]]
start = 0
count = 1
[[fields]]
name = "volume_m3"
register = 0
type = "u16"
scale = "${litres_per_pulse}e-3"
"""


def test_a_16_bit_count_wraps_at_65536_pulses(tmp_path: Path) -> None:
    """The span was 2**32 pulses whatever the counter: a u16 module's 65,530 → 4 was published as
    65.53 → 0.004 m³ at 1 L a pulse. The span comes from the volume field's type."""
    path = tmp_path / "u16_pulse.toml"
    path.write_text(U16_PULSE)
    m = MeterConfig("P-16", 1, str(path), {"litres_per_pulse": 1})
    book = ProfileBook()

    def read(count: int, at: datetime) -> float:
        reading = to_reading(m, book.profile(m), [count], at, "modbus-tcp", "bus-1", book.volume_filter(m))
        assert reading.protocol == "pulse"
        return reading.volume_m3

    assert read(65_530, T0) == 65.53
    assert read(4, T0 + timedelta(minutes=1)) == 65.54
    assert read(10, T0 + timedelta(minutes=2)) == 65.546


CONFIG = """gateway_id = "gw-1"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[buses]]
name = "tcp-1"
protocol = "modbus-tcp"
host = "127.0.0.1"
[[meters]]
meter_id = "WM-1"
bus = "tcp-1"
unit_id = 1
profile = "{profile}"
parameters = {parameters}
"""


@pytest.mark.parametrize(
    ("profile", "parameters", "complaint"),
    [
        # on a meter's own register: every poll died on an InvalidOperation ("1 L"), unseen; a number
        # labelled the register a pulse count
        ("smart_water_meter", '{ litres_per_pulse = "1 L" }', "'litres_per_pulse' is no parameter of profile"),
        ("smart_water_meter", "{ litres_per_pulse = 1 }", "'litres_per_pulse' is no parameter of profile"),
        ("smart_water_meter", "{ max_flow_m3h = 5 }", "'max_flow_m3h' is no parameter"),
        ("pulse_counter", '{ litres_per_pulse = "1 L" }', "litres_per_pulse"),
        ("pulse_counter", "{ litres_per_pulse = 1, litres_per_puls = 2 }", "'litres_per_puls' is no parameter"),
    ],
)
def test_a_parameter_the_profile_does_not_use_is_refused_when_the_configuration_loads(
    profile: str, parameters: str, complaint: str
) -> None:
    from gateway.config import parse_config_text

    with pytest.raises(ValueError, match=complaint):
        parse_config_text(CONFIG.format(profile=profile, parameters=parameters))


def test_a_changed_litres_per_pulse_carries_the_register_on(tmp_path: Path) -> None:
    """10 L a pulse corrected to 1 L (a reload, or a restart): the register carries on from where it
    was, the pulses after the change counted at 1 L."""
    spool = Spool(tmp_path / "s.sqlite")
    book = ProfileBook(spool)
    assert publish(book, meter(10), 1_000, T0) == 10.0
    assert publish(book, meter(10), 1_100, T0 + timedelta(minutes=1)) == 11.0
    corrected = ProfileBook(spool)  # what cmd/reload makes
    assert publish(corrected, meter(1), 1_100, T0 + timedelta(minutes=2)) == 11.0
    assert publish(corrected, meter(1), 1_600, T0 + timedelta(minutes=3)) == 11.5
    spool.close()


def test_a_wider_counter_at_the_same_rate_keeps_the_count(tmp_path: Path) -> None:
    """The profile's count goes from u16 to u32 at the same litres per pulse: the same count is the
    same water (only the span changed), so nothing is rebased."""
    path = tmp_path / "u16_pulse.toml"
    path.write_text(U16_PULSE)
    spool = Spool(tmp_path / "s.sqlite")
    narrow = MeterConfig("P-1", 1, str(path), {"litres_per_pulse": 1})
    book = ProfileBook(spool)
    book.volume_filter(narrow)
    assert (
        to_reading(narrow, book.profile(narrow), [1_000], T0, "modbus-tcp", "b", book.volume_filter(narrow)).volume_m3
        == 1.0
    )
    assert publish(ProfileBook(spool), meter(1), 1_500, T0 + timedelta(minutes=1)) == 1.5
    spool.close()


def test_one_bad_read_of_a_small_count_is_not_counted_twice() -> None:
    """A single read of 0 between two counts near 3.3e9 looks like a restart; when the next count is
    back where it was, it carries on from there: without that, the register would take the whole
    count (330,000 m³) a second time."""
    book, m = ProfileBook(), meter()
    assert publish(book, m, 3_300_000_000, T0) == 330_000.0
    assert publish(book, m, 0, T0 + timedelta(minutes=1)) == 330_000.0  # taken for a restart
    assert publish(book, m, 3_300_000_050, T0 + timedelta(minutes=2)) == 330_000.005
    assert publish(book, m, 3_300_000_060, T0 + timedelta(minutes=3)) == 330_000.006


def test_one_bad_read_of_a_small_count_is_not_counted_twice_across_a_gateway_restart(tmp_path: Path) -> None:
    """The state before a read taken for a restart was kept in memory only: a gateway restart (or a
    reload) between the bad read and the next one lost it, and the count back at 3.3e9 was published
    on the restart's offset, 660,000.005 m³, the whole count a second time, kept for good. It is kept
    in the spool with the rest of the counter's state."""
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    book, m = ProfileBook(spool), meter()
    assert publish(book, m, 3_300_000_000, T0) == 330_000.0
    assert publish(book, m, 0, T0 + timedelta(minutes=1)) == 330_000.0  # taken for a restart
    spool.close()
    spool = Spool(path)
    again = ProfileBook(spool)
    assert publish(again, m, 3_300_000_050, T0 + timedelta(minutes=2)) == 330_000.005
    assert publish(again, m, 3_300_000_060, T0 + timedelta(minutes=3)) == 330_000.006
    spool.close()
    spool = Spool(path)  # confirmed or not, the next read settles it: nothing left to undo
    assert publish(ProfileBook(spool), m, 0, T0 + timedelta(minutes=4)) == 330_000.006
    spool.close()
