"""Reading libmbus's conformance corpus in place (/work/shared/conformance/libmbus) and comparing.

Where the files are, how libmbus writes units, media and values, and the comparison of one decoded
frame with one ``*.norm.xml`` (used by test_mbus_conformance.py); the tests at the end check that
the comparison itself notices what it must.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "libmbus"
TEST_FRAMES = CORPUS / "test-frames"
ERROR_FRAMES = CORPUS / "error-frames"
UNSUPPORTED_FRAMES = CORPUS / "unsupported-frames"

#: libmbus's medium strings -> EN 13757-3 Table 12 code -> our names (via header.MEDIUM).
LIBMBUS_MEDIUM = {
    "Other": 0x00,
    "Oil": 0x01,
    "Electricity": 0x02,
    "Gas": 0x03,
    "Heat: Outlet": 0x04,
    "Heat": 0x04,
    "Steam": 0x05,
    "Warm water (30-90°C)": 0x06,
    "Water": 0x07,
    "Heat Cost Allocator": 0x08,
    "Heat: Inlet": 0x0C,
    "Heat / Cooling load meter": 0x0D,
    "Bus/System": 0x0E,
    "Cold water": 0x16,
    "Breaker: Electricity": 0x20,
}

#: libmbus's normalised units -> ours.
LIBMBUS_UNIT = {
    "m^3": "m3",
    "m^3/h": "m3/h",
    "°C": "degC",
    "Wh": "Wh",
    "W": "W",
    "s": "s",
    "V": "V",
    "A": "A",
    "K": "K",
    "J": "J",
    "": None,
    "-": None,
    "Units for H.C.A.": None,
    "Reserved": None,
}

#: Units libmbus leaves unnormalised (fixed data structure): ours and the power of ten between.
LIBMBUS_SCALED_UNIT = {"l": ("m3", -3), "kWh": ("Wh", 3)}

MANUFACTURER_FUNCTIONS = ("Manufacturer specific", "More records follow")


def frame_names(directory: Path) -> list[str]:
    return sorted(path.name[: -len(".hex")] for path in directory.glob("*.hex"))


def read_hex(path: Path) -> bytes:
    return bytes.fromhex("".join(path.read_text(encoding="latin-1").split()))


@dataclass
class Expected:
    header: dict[str, str]
    records: list[dict[str, str]]
    manufacturer_data: str | None
    more_records_follow: bool


def read_expected(name: str) -> Expected:
    # the files say ISO-8859-1 but are written in UTF-8 ("°C" as two bytes)
    raw = (TEST_FRAMES / f"{name}.norm.xml").read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    root = ET.fromstring(text.split("?>", 1)[1] if text.startswith("<?xml") else text)
    slave = root.find("SlaveInformation")
    header = {child.tag: (child.text or "") for child in slave} if slave is not None else {}
    records: list[dict[str, str]] = []
    manufacturer_data = None
    more = False
    for element in root.findall("DataRecord"):
        fields = {child.tag: (child.text or "") for child in element}
        if fields.get("Function") in MANUFACTURER_FUNCTIONS:
            manufacturer_data = fields.get("Value", "").replace(" ", "").lower()
            more = fields["Function"] == "More records follow"
            continue
        records.append(fields)
    return Expected(header, records, manufacturer_data, more)


def _same_number(ours: Any, theirs: str) -> bool:
    if isinstance(ours, bool) or not isinstance(ours, int | float):
        return False
    expected = float(theirs)
    # libmbus prints with %f (six decimals): the tolerance is that rounding, relative for big values
    return math.isclose(float(ours), expected, rel_tol=1e-9, abs_tol=5.1e-7)


def same_value(record: dict[str, Any], theirs: str, theirs_unit: str = "") -> bool:
    ours = record["value"]
    quantity = record["quantity"]
    if quantity.startswith("date_") or quantity == "date":
        return ours == theirs
    if quantity.startswith("datetime") and isinstance(ours, str):
        # libmbus writes type F with ":00Z" seconds and type I with "Z"
        return theirs in (ours + ":00Z", ours + "Z")
    if record["unit"] is not None and theirs_unit in LIBMBUS_SCALED_UNIT:
        exponent = LIBMBUS_SCALED_UNIT[theirs_unit][1]
        theirs = repr(float(theirs) * 10**exponent)
    if isinstance(ours, str):
        return ours.lower() == theirs.replace(" ", "").lower() or ours == theirs
    try:
        return _same_number(ours, theirs)
    except ValueError:
        return False


def same_unit(record: dict[str, Any], expected: dict[str, str]) -> bool:
    theirs = expected.get("Unit", "")
    if record["quantity"] == "plain_text":
        return record["unit"] == expected.get("Quantity")
    if theirs in LIBMBUS_SCALED_UNIT:
        return record["unit"] == LIBMBUS_SCALED_UNIT[theirs][0]
    if theirs not in LIBMBUS_UNIT:
        return False
    return record["unit"] == LIBMBUS_UNIT[theirs]


def compare(decoded: dict[str, Any], expected: Expected) -> list[str]:
    """Every difference between our decoding and libmbus's, as text (empty: the frame matches)."""
    from firmware_protocols.mbus.header import MEDIUM

    problems: list[str] = []
    header = expected.header
    checks: list[tuple[str, Any, Any]] = [
        # libmbus prints the identification without leading zeros
        ("Id", (decoded["id"] or "").lstrip("0") or "0", header["Id"].upper()),
        ("AccessNumber", decoded["access_no"], int(header["AccessNumber"])),
        ("Status", decoded["status"], int(header["Status"], 16)),
        ("Medium", decoded["medium"], MEDIUM[LIBMBUS_MEDIUM[header["Medium"]]]),
    ]
    if "Manufacturer" in header:
        checks.append(("Manufacturer", decoded["manufacturer"], header["Manufacturer"]))
        checks.append(("Version", decoded["version"], int(header["Version"])))
        checks.append(("Signature", decoded["signature"], int(header["Signature"], 16)))
    for field, ours, theirs in checks:
        if ours != theirs:
            problems.append(f"header {field}: ours {ours!r}, libmbus {theirs!r}")
    records = decoded["records"]
    if len(records) != len(expected.records):
        problems.append(f"{len(records)} records, libmbus {len(expected.records)}")
    for index, (ours, theirs) in enumerate(zip(records, expected.records, strict=False)):
        if "StorageNumber" in theirs and ours["storage"] != int(theirs["StorageNumber"]):
            problems.append(f"record {index} storage: ours {ours['storage']}, libmbus {theirs['StorageNumber']}")
        if not same_unit(ours, theirs):
            problems.append(f"record {index} unit: ours {ours['unit']!r}, libmbus {theirs.get('Unit')!r}")
        if not same_value(ours, theirs.get("Value", ""), theirs.get("Unit", "")):
            problems.append(f"record {index} value: ours {ours['value']!r}, libmbus {theirs.get('Value')!r}")
    if expected.manufacturer_data is not None or decoded["manufacturer_data"]:
        if (decoded["manufacturer_data"] or "") != (expected.manufacturer_data or ""):
            problems.append(
                f"manufacturer data: ours {decoded['manufacturer_data']!r}, libmbus {expected.manufacturer_data!r}"
            )
        if decoded["more_records_follow"] != expected.more_records_follow:
            problems.append("more records follow differs")
    return problems


# --- The comparison must be able to fail ----------------------------------------------------------


def _decoded(name: str) -> dict[str, Any]:
    from firmware_protocols.mbus import decode_frame

    return decode_frame(read_hex(TEST_FRAMES / f"{name}.hex"))


def test_corpus_is_where_the_tests_look() -> None:
    assert TEST_FRAMES.is_dir() and len(frame_names(TEST_FRAMES)) == 76


def test_compare_notices_a_wrong_value_unit_storage_and_header() -> None:
    name = "oms_frame3"
    expected = read_expected(name)
    assert compare(_decoded(name), expected) == []
    for key, wrong in (("value", 703.477), ("unit", "m3/h"), ("storage", 3)):
        decoded = _decoded(name)
        decoded["records"][1][key] = wrong
        assert [p for p in compare(decoded, expected) if p.startswith("record 1 ")], key
    decoded = _decoded(name)
    decoded["manufacturer"] = "HYX"
    assert compare(decoded, expected) == ["header Manufacturer: ours 'HYX', libmbus 'HYD'"]
    decoded = _decoded(name)
    decoded["records"].pop()
    assert compare(decoded, expected) == ["8 records, libmbus 9"]
    decoded = _decoded(name)
    decoded["manufacturer_data"] = "00"
    assert compare(decoded, expected)
