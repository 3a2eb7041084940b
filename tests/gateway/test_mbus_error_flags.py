"""An M-Bus meter's error flags record (VIF FDh 17h, EN 13757-3:2018 Table 14): its bits are the
manufacturer's, so the gateway reads them by the map its configuration gives (``error_flags``).
Before, the record was never read: a wired or wireless M-Bus meter's leak, burst, tamper, reverse
flow or dry alarm never reached a reading, only its status byte's power low and errors did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.config.reader import ConfigError
from aquami.contracts.reads import ALARMS
from firmware_protocols.mbus import RecordSpec, build_req_ud2, decode_frame
from firmware_protocols.mbus.build import build_rsp_ud
from gateway.config import MeterConfig, parse_config_text
from gateway.mbus import reading_from_records
from simulators.events import Leak, LowBattery
from simulators.mbus_bus import MBusBus
from simulators.mbus_slave import ERROR_FLAG_BITS, MBusWaterMeter
from simulators.meter_model import MeterModel

AT = datetime(2026, 3, 4, 3, 30, tzinfo=UTC)
BITS = st.lists(st.sampled_from(["", *ALARMS]), max_size=16).map(tuple)


def telegram(flags: int, status: int = 0) -> dict:
    records = [RecordSpec("bcd8", 0x13, 12345), RecordSpec("int16", 0x7D, flags - (flags >> 15 << 16), vifes=(0x17,))]
    return decode_frame(build_rsp_ud(5, "12345678", "KAM", 1, "water", 1, status, records))


@given(names=BITS, flags=st.integers(0, 0xFFFF))
def test_each_set_bit_raises_the_alarm_the_meter_s_map_names(names: tuple[str, ...], flags: int) -> None:
    meter = MeterConfig("FLAT-5", 5, "mbus", error_flags=names)
    reading = reading_from_records(meter, [telegram(flags)], AT, "mbus-1")
    expected = {name for bit, name in enumerate(names) if name and flags >> bit & 1}
    assert set(reading.alarms) == expected
    assert list(reading.alarms) == [name for name in ALARMS if name in expected]  # the contract's order
    assert reading.volume_m3 == 12.345


def test_without_a_map_the_record_raises_nothing_and_status_alarms_stay() -> None:
    meter = MeterConfig("FLAT-5", 5, "mbus")
    assert reading_from_records(meter, [telegram(0xFFFF, status=0x04)], AT, "mbus-1").alarms == ("low_battery",)


def test_the_simulated_meter_s_alarms_reach_the_reading_through_its_map() -> None:
    """The rig's M-Bus meter sets its error flags by :data:`simulators.mbus_slave.ERROR_FLAG_BITS`:
    a leak on the meter is a leak in the gateway's reading (before: only the status byte's power low)."""
    model = MeterModel("MB000001", installed=AT - timedelta(days=30), seed=1, initial_m3=10.0)
    model.inject(Leak(start=AT - timedelta(days=2), rate_lph=30.0))
    model.inject(LowBattery(start=AT - timedelta(hours=1)))
    bus = MBusBus([MBusWaterMeter(model, 1, "26000001")])
    reply = bus.handle(build_req_ud2(1, fcb=True), AT)
    assert reply is not None
    truth = model.read(AT)
    assert {"leak", "low_battery"} <= set(truth.alarms)
    meter = MeterConfig("MB000001", 1, "mbus", error_flags=ERROR_FLAG_BITS)
    reading = reading_from_records(meter, [decode_frame(reply.data)], AT, "mbus-1")
    assert set(reading.alarms) == set(truth.alarms)


CONFIG = """gateway_id = "g"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[buses]]
name = "m"
protocol = "mbus"
device = "/dev/ttyUSB0"
[[buses.meters]]
meter_id = "FLAT-1"
address = 1
{flags}
"""


def test_the_map_is_read_from_the_configuration() -> None:
    config = parse_config_text(CONFIG.format(flags='error_flags = ["leak", "", "burst"]'))
    assert config.buses[0].meters[0].error_flags == ("leak", "", "burst")
    assert parse_config_text(CONFIG.format(flags="")).buses[0].meters[0].error_flags == ()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ('error_flags = ["leak", "flood"]', "names alarm(s) 'flood'"),
        ('error_flags = "leak"', "expected array"),
        ("error_flags = [1, 2]", "a list of alarm names by bit"),
        ("error_flags = [" + ", ".join(['""'] * 65) + "]", "at most 64"),
    ],
)
def test_a_bad_map_is_a_config_error_naming_the_field(flags: str, message: str) -> None:
    with pytest.raises(ConfigError, match="error_flags") as error:
        parse_config_text(CONFIG.format(flags=flags))
    assert message in str(error.value)
