"""The example units' sandbox, as systemd itself rates it (``systemd-analyze security --offline=true``,
which reads a unit file without a running systemd). Before 2026-12-07 each was 8.5 EXPOSED: only
NoNewPrivileges, ProtectSystem, ProtectHome and PrivateTmp, the files each made readable by every
user (no UMask), every system call and address family allowed. The settings are not run under
systemd here (README, "Running as a service"); this keeps them from being dropped unseen, and each
unit's comment true to its figure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_service_units import GATEWAY_UNIT, UNITS

#: The exposure each unit is to stay at or below (systemd's "OK" band ends at 2.0).
WORST_ALLOWED = 2.0


def _exposure(unit: Path) -> float:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed (Debian: apt-get install systemd; scripts/test-deps)")
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    return float(found[1])


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_each_unit_is_sandboxed_as_its_comment_says(unit: Path) -> None:
    said = re.search(r"rates this unit's exposure (\d+\.\d)", unit.read_text())
    assert said is not None, f"{unit.name}: no comment saying its exposure"
    exposure = _exposure(unit)
    assert exposure == float(said[1]), f"{unit.name}: rated {exposure}, its comment says {said[1]}"
    assert exposure <= WORST_ALLOWED


def test_the_gateway_keeps_its_serial_ports() -> None:
    """PrivateDevices, or ProtectClock on an older systemd (its implied DeviceAllow), would close the
    RS-485 and M-Bus converters and the wM-Bus stick to the gateway: neither is set there."""
    settings = [line.split("=", 1)[0] for line in GATEWAY_UNIT.read_text().splitlines() if not line.startswith("#")]
    assert "PrivateDevices" not in settings and "ProtectClock" not in settings and "DeviceAllow" not in settings
    assert "SupplementaryGroups" in settings  # dialout
