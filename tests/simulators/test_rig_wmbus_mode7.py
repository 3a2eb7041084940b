"""The rig's OMS security mode 7 radio meter (``security_mode = 7`` on a ``wmbus_oms`` meter).

Before, the rig's radio meters sent mode 5 only (``security_mode`` was an unknown key): a technician
could not try a mode 7 meter, one with an AFL, a message counter and an AES-CMAC (OMS Specification
Vol. 2, security profile B; EN 13757-7:2018 clauses 6 and 9), on the rig. The telegrams here are read
by the decoder the gateway uses (:func:`firmware_protocols.wmbus.decode_telegram`, as
``gateway.wmbus`` calls it), with the rig's key and with a wrong one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aquami.config.reader import ConfigError
from firmware_protocols.wmbus import decode_telegram
from firmware_protocols.wmbus.errors import DecodeError
from simulators.meter_model import MeterModel
from simulators.rig.config import load_rig, parse_rig_text
from simulators.wmbus_meter import WMBusMeter
from tests.simulators.test_rig_gateway_config import EXAMPLE

INSTALLED = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
IDENT = "77000002"
KEY = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")


def _meter(initial_m3: float = 12.5, seed: int = 3) -> WMBusMeter:
    model = MeterModel("W000002", installed=INSTALLED, seed=seed, initial_m3=initial_m3)
    return WMBusMeter(model, IDENT, KEY, interval_s=16.0, security_mode=7)


def _volume(decoded: dict) -> float:
    (record,) = [r for r in decoded["records"] if r["quantity"] == "volume" and r["storage"] == 0]
    return float(record["value"])


@settings(max_examples=25, deadline=None)
@given(
    initial_m3=st.floats(min_value=0.0, max_value=99_000.0, allow_nan=False),
    seed=st.integers(min_value=0, max_value=1000),
    gaps_s=st.lists(st.floats(min_value=0.1, max_value=3 * 86_400.0), min_size=1, max_size=5),
)
def test_mode_7_telegrams_decode_to_the_meters_register_with_a_rising_counter(
    initial_m3: float, seed: int, gaps_s: list[float]
) -> None:
    radio = _meter(initial_m3, seed)
    at, counters = NOW, []
    for gap in gaps_s:
        at += timedelta(seconds=gap)
        decoded = decode_telegram(radio.telegram(at), {IDENT: KEY}, crcs=False)
        assert decoded["security_mode"] == 7
        assert decoded["configuration_extension"]["kdf_selection"] == 1  # KDF-A
        assert decoded["afl"]["authentication_type"] == 5  # AES-CMAC-128, 8 bytes
        assert _volume(decoded) == round(radio.meter.volume_m3(at) * 1000) / 1000
        counters.append(decoded["afl"]["message_counter"])
    assert counters == sorted(set(counters))  # strictly rising, telegram by telegram
    assert counters[0] >= int((NOW - INSTALLED).total_seconds())


def test_a_mode_7_telegram_under_a_wrong_key_gives_no_reading() -> None:
    telegram = _meter().telegram(NOW)
    wrong = bytes(b ^ 0x01 for b in KEY)
    with pytest.raises(DecodeError, match="77000002"):
        decode_telegram(telegram, {IDENT: wrong}, crcs=False)
    tampered = bytearray(telegram)
    tampered[-1] ^= 0xFF  # the last encrypted byte: the MAC no longer matches
    with pytest.raises(DecodeError, match="77000002"):
        decode_telegram(bytes(tampered), {IDENT: KEY}, crcs=False)


def test_a_restarted_rigs_meter_counts_on_above_what_it_sent_before() -> None:
    """A gateway refuses a counter not above the last it took (gateway.wmbus_replay): a rig started
    again, its meter counting from scratch, would be read no more."""
    before = _meter()
    for n in range(20):  # sent faster than once a second: the counter runs ahead of the clock
        before.telegram(NOW + timedelta(seconds=n / 4))
    last = before.message_counter
    after = _meter()  # the rig started again 30 s later
    counter = decode_telegram(after.telegram(NOW + timedelta(seconds=30)), {IDENT: KEY}, crcs=False)["afl"]
    assert counter["message_counter"] > last


def test_a_mode_5_meter_sends_no_afl_as_before() -> None:
    model = MeterModel("W000001", installed=INSTALLED, seed=1, initial_m3=1.0)
    decoded = decode_telegram(WMBusMeter(model, "77000001", KEY).telegram(NOW), {"77000001": KEY}, crcs=False)
    assert decoded["security_mode"] == 5 and decoded["afl"] is None


def test_the_example_rig_has_a_mode_7_meter_with_its_key() -> None:
    meters = {m.meter_id: m for m in load_rig(EXAMPLE, now=NOW).meters}
    assert meters["W000002"].security_mode == 7 and meters["W000002"].key == KEY
    assert meters["W000001"].security_mode == 5
    assert "W000002" in meters["DMA1-INLET"].customers


@pytest.mark.parametrize("mode", ["0", "6", '"7"'])
def test_a_security_mode_other_than_5_or_7_is_refused_naming_the_line(mode: str) -> None:
    text = (
        '[rig]\n[[transport]]\nname = "w"\nprotocol = "wmbus"\n'
        '[[meter]]\nid = "W1"\nkind = "wmbus_oms"\ntransport = "w"\nsecondary = "77000002"\n'
        f'key = "{KEY.hex()}"\nsecurity_mode = {mode}\n'
    )
    with pytest.raises(ConfigError, match=r"rig.toml:11: meter\[0\]\.security_mode"):
        parse_rig_text(text, now=NOW)


def test_security_mode_belongs_to_radio_meters_only() -> None:
    text = (
        '[rig]\n[[transport]]\nname = "m"\nprotocol = "mbus"\n'
        '[[meter]]\nid = "MB1"\nkind = "mbus_water"\ntransport = "m"\naddress = 1\nsecondary = "26000001"\n'
        "security_mode = 7\n"
    )
    with pytest.raises(ConfigError, match="security_mode"):
        parse_rig_text(text, now=NOW)
