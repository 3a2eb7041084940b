"""EN 13757-2 link layer: frame formats, their checks, C-field names, master frames, the CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import SINGLE_CHARACTER, build_ack, decode_frame, decode_master_frame
from firmware_protocols.mbus.frame import decode_frame_reference
from firmware_protocols.mbus.link import LongFrame, ShortFrame, build_long, c_field_name, parse_link


def _water() -> bytes:
    """CI 72h: a volume, a date/time, error flags and the model version."""
    user = bytes.fromhex("785634129315070755000000" + "0C1378563412" + "046D3B179F1C" + "02FD170000" + "01FD0C07")
    return build_long(0x08, 0x01, 0x72, user)


def test_water_frame_bytes() -> None:
    frame = _water()
    assert frame.hex().upper() == (
        "682424680801727856341293150707550000000C1378563412046D3B179F1C02FD17000001FD0C077216"
    )
    assert frame[:4] == bytes((0x68, len(frame) - 6, len(frame) - 6, 0x68))
    assert frame[-1] == 0x16 and frame[-2] == sum(frame[4:-2]) & 0xFF
    decoded = decode_frame(frame)
    assert decoded["id"] == "12345678" and decoded["manufacturer"] == "ELS" and decoded["medium"] == "water"
    assert decoded["version"] == 7 and decoded["access_no"] == 0x55
    assert [(r["quantity"], r["value"]) for r in decoded["records"]] == [
        ("volume", 12345.678),
        ("datetime", "2012-12-31T23:59"),
        ("error_flags", 0),
        ("model_version", 7),
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f[:-2] + bytes(((f[-2] + 1) & 0xFF,)) + f[-1:], "checksum"),
        (lambda f: f[:-1] + b"\x17", "stop byte"),
        (lambda f: f[:1] + bytes((f[1] + 1,)) + f[2:], "L fields differ"),
        (lambda f: f[:1] + bytes((f[1] + 1, f[2] + 1)) + f[3:], "needs"),
        (lambda f: f[:3] + b"\x69" + f[4:], "second start byte"),
        (lambda f: f[:-3], "needs"),
        (lambda f: f + b"\x00", "needs"),
        (lambda f: b"\x69" + f[1:], "start byte"),
    ],
)
def test_long_frame_checks(mutate, message: str) -> None:
    frame = mutate(_water())
    for decode in (decode_frame, decode_frame_reference):
        with pytest.raises(DecodeError, match=message):
            decode(frame)


@pytest.mark.parametrize(
    "frame",
    ["", "10", "104001", "1040014216", "1040014117", "10400141", "E5E5", "E500", "68", "6803"],
)
def test_short_and_single_checks(frame: str) -> None:
    with pytest.raises(DecodeError):
        decode_frame(bytes.fromhex(frame))


def test_single_character() -> None:
    assert build_ack() == bytes((SINGLE_CHARACTER,)) == b"\xe5"
    assert decode_frame(b"\xe5") == {"frame_type": "single"}
    with pytest.raises(DecodeError):
        decode_master_frame(b"\xe5")


def test_control_frame() -> None:
    # a control frame is a long frame with L = 3: C, A, CI only (here a master's application reset)
    frame = build_long(0x53, 0x05, 0x50)
    assert frame == bytes.fromhex("68030368530550A816")
    assert decode_master_frame(frame)["frame_type"] == "control"
    assert decode_master_frame(frame)["command"] == "application_reset"


def test_master_frames_reject_a_slave_answer() -> None:
    with pytest.raises(DecodeError, match="not a master"):
        decode_master_frame(_water())


@pytest.mark.parametrize(
    ("c_field", "name"),
    [(0x40, "SND_NKE"), (0x53, "SND_UD"), (0x73, "SND_UD"), (0x5B, "REQ_UD2"), (0x7B, "REQ_UD2"),
     (0x5A, "REQ_UD1"), (0x08, "RSP_UD"), (0x18, "RSP_UD"), (0x28, "RSP_UD")],
)  # fmt: skip
def test_c_field_names(c_field: int, name: str) -> None:
    assert c_field_name(c_field) == name


@given(st.integers(0, 255), st.integers(0, 255))
def test_short_frame_parse_then_build(c_field: int, address: int) -> None:
    frame = bytes((0x10, c_field, address, (c_field + address) & 0xFF, 0x16))
    assert ShortFrame.build(ShortFrame.parse(frame)) == frame
    assert parse_link(frame)["a_field"] == address


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=252))
def test_long_frame_parse_then_build(c_field: int, address: int, ci: int, user_data: bytes) -> None:
    frame = build_long(c_field, address, ci, user_data)
    parsed = LongFrame.parse(frame)
    assert (parsed.c_field, parsed.a_field, parsed.ci_field, parsed.user_data) == (c_field, address, ci, user_data)
    assert LongFrame.build(parsed) == frame


def test_long_frame_too_long_to_build() -> None:
    with pytest.raises(DecodeError):
        build_long(0x08, 1, 0x72, bytes(253))


def test_short_header_and_no_header() -> None:
    records = bytes.fromhex("0C1378563412")
    short = decode_frame(build_long(0x08, 1, 0x7A, bytes.fromhex("55000000") + records))
    assert (short["id"], short["access_no"], short["records"][0]["value"]) == (None, 0x55, 12345.678)
    none = decode_frame(build_long(0x08, 1, 0x78, records))
    assert (none["access_no"], none["records"][0]["value"]) == (None, 12345.678)
    with pytest.raises(DecodeError, match="CI field 99h"):
        decode_frame(build_long(0x08, 1, 0x99, records))


def test_cli_decode_mbus(capsys: pytest.CaptureFixture[str]) -> None:
    from aquami.commands.decode import decode_lines

    status = decode_lines([_water().hex(" "), "10 40 01 41 16", "68 00"], decode_frame)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert lines[0]["records"][0]["value"] == 12345.678
    assert lines[1]["function"] == "SND_NKE"
    assert "error" in lines[2]
