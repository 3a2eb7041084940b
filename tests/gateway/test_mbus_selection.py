"""Which meter a secondary-address selection selects (EN 13757-3, secondary addressing), as the
search's read checks the answer it takes: a decoded RSP_UD against the selection's identification
mask (``F``: any digit) and, when the selection fixed them, its manufacturer, version and medium."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.mbus import build_rsp_ud, decode_frame
from firmware_protocols.records import DataRecord
from gateway.mbus import selected_by

identifications = st.text("0123456789", min_size=8, max_size=8)
masks = st.text("0123456789F", min_size=8, max_size=8)


def _telegram(identification: str) -> dict[str, Any]:
    frame = build_rsp_ud(0xFD, identification, "ELS", 7, "water", 0, 0, [(DataRecord("volume", "m3", 1.0), "bcd8")])
    return decode_frame(frame)


@given(identifications, masks)
def test_a_meter_is_selected_when_each_digit_of_the_mask_is_its_own_or_f(identification: str, mask: str) -> None:
    expected = all(wanted in ("F", digit) for wanted, digit in zip(mask, identification, strict=True))
    assert selected_by(_telegram(identification), mask) is expected


@given(identifications)
def test_a_meter_s_own_identification_and_the_all_wildcard_mask_select_it(identification: str) -> None:
    telegram = _telegram(identification)
    assert selected_by(telegram, identification)
    assert selected_by(telegram, "FFFFFFFF")


@given(identifications, st.sampled_from(["ELS", "KAM", "SEN"]), st.integers(0, 255), st.sampled_from(["water", "gas"]))
def test_fixed_manufacturer_version_and_medium_must_be_the_meter_s(
    identification: str, manufacturer: str, version: int, medium: str
) -> None:
    telegram = _telegram(identification)  # ELS, version 7, water
    assert selected_by(telegram, identification, manufacturer=manufacturer) is (manufacturer == "ELS")
    assert selected_by(telegram, identification, version=version) is (version == 7)
    assert selected_by(telegram, identification, medium=medium) is (medium == "water")
    assert selected_by(telegram, "FFFFFFFF", "ELS", 7, "water")


def test_a_telegram_without_an_identification_is_no_selected_meter_s() -> None:
    assert not selected_by({"id": None}, "FFFFFFFF")
    assert not selected_by({}, "FFFFFFFF")
