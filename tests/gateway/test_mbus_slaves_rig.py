"""The test rigs of tests/gateway/mbus_slaves.py do what their docstrings say, on the line: a rig that
did otherwise had tests measure the rig instead of the gateway."""

from __future__ import annotations

from typing import Literal

import pytest

from firmware_protocols.mbus import build_snd_ud_select
from gateway.config import MBusBusConfig
from gateway.mbus_line import MBusLine
from gateway.transport import PollError
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.mbus_slaves import MBusSlave, SlowReads

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"


def test_slow_reads_lets_a_collision_s_garbage_through_at_once() -> None:
    """Two meters selected at once garble the line at once: only an RSP_UD is late (3 s here, a 1 s
    window). Before, the rig let only an exact E5h through at once and delayed the collision's
    garbage with the reads: the selection looked unanswered (no answer in its window)."""
    slaves = SlowReads([MBusSlave(0, "12340001", 1.0), MBusSlave(0, "12340002", 2.0)], 3.0)
    with SerialLine(slaves, LineSettings(9600, parity="E")) as line:
        master = MBusLine(MBusBusConfig("mbus-1", line.port, (), baudrate=9600, parity=PARITY, answer_timeout_s=1.0))
        try:
            with pytest.raises(PollError, match="garbled answer"):
                master.exchange(build_snd_ud_select("1234000F"), whole_window=True)
        finally:
            master.close()
