"""Hand-written TOML files (a gateway's configuration, a rig) and the rig's state file: one that is
not UTF-8 is refused in one line naming the file, and one a Windows editor saved with a byte order
mark reads as without it, errors on the same lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aquami.cli import app

BOM = b"\xef\xbb\xbf"
EXAMPLES = Path(__file__).resolve().parents[1]
GATEWAY = (EXAMPLES / "gateway" / "examples" / "gateway.toml").read_bytes()
RIG = (EXAMPLES / "simulators" / "examples" / "rig.toml").read_bytes()

GATEWAY_MINIMAL = b"""gateway_id = "gw-1"

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
"""


def _check(kind: str, path: Path, *more: str) -> tuple[int, str]:
    args = ["gateway", "check", str(path)] if kind == "gateway" else ["simulate", "rig", "--config", str(path)]
    result = CliRunner().invoke(app, [*args, *(["--check"] if kind == "rig" else []), *more])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(("kind", "text"), [("gateway", GATEWAY), ("rig", RIG)])
def test_a_file_with_a_byte_order_mark_reads_as_without_it(tmp_path: Path, kind: str, text: bytes) -> None:
    """It was refused as "not valid TOML: Invalid statement (at line 1, column 1)"."""
    path = tmp_path / "with-bom.toml"
    path.write_bytes(BOM + text)
    code, output = _check(kind, path)
    assert code == 0, output


def test_an_error_in_a_file_with_a_byte_order_mark_is_on_its_line(tmp_path: Path) -> None:
    """The mark is dropped before the lines are counted: an error on line 1 is still said at line 1."""
    path = tmp_path / "gw.toml"
    path.write_bytes(BOM + GATEWAY_MINIMAL.replace(b'"gw-1"', b"7"))
    code, output = _check("gateway", path)
    assert code == 1 and f"{path}:1: gateway_id: expected string, got integer 7" in output
    rig = tmp_path / "rig.toml"
    rig.write_bytes(BOM + b"[rig]\nseed = -1\n")
    code, output = _check("rig", rig)
    assert code == 2 and f"{rig}:2: rig.seed: -1 must be at least 0" in output


@pytest.mark.parametrize(("kind", "text"), [("gateway", GATEWAY_MINIMAL), ("rig", RIG)])
def test_a_file_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path, kind: str, text: bytes) -> None:
    """The rig's was a UnicodeDecodeError traceback; the gateway's said the codec's words only."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(text.replace(b"\n", b"\n# caf\xe9 (latin-1)\n", 1))  # line 2
    code, output = _check(kind, path)
    assert code in (1, 2) and f"{path}:2: not UTF-8 (byte 0xe9): save the file as UTF-8" in output


def test_a_rig_state_file_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    """It was a UnicodeDecodeError traceback from ``simulate rig --check`` (and from the run)."""
    rig = tmp_path / "rig.toml"
    rig.write_bytes(RIG)
    state = tmp_path / "rig.state.json"
    state.write_bytes(b'{"format": 1, "seed": 7, "note": "caf\xe9"}')
    code, output = _check("rig", rig)
    assert code == 2 and f"{state}: not a rig state file: not UTF-8" in output
