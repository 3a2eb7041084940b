"""A simulator's dropped "no such unit" line takes its ``Repeating....`` with it, whatever frames follow.

pymodbus 3.16 logs a line the same as the one before it as ``Repeating....`` and appends to an
ERROR line the frames kept since the last one. The simulator's filter judged a ``Repeating....`` by
``Log.last_log_text``, which by then was the last frame's text (``send: …``), not the line it stands
for: a scan of a rig's empty units printed ``Repeating....`` with frames for each unit asked again,
among the rig's table (in one process with the gateway, the demo, the frames were any bus's)."""

from __future__ import annotations

import logging

import pytest
from pymodbus.logging import Log

import simulators.modbus_tcp  # noqa: F401  (puts the simulators' filters on pymodbus's logger)
from aquami.pymodbus_lines import PYMODBUS_LOGGER
from simulators.absent_units import NO_SUCH_UNIT

ABSENT = f"{NO_SUCH_UNIT}: 7"
KEPT = "ERROR: some other pymodbus error, said by no one else"
ASKED_OF_UNIT_7 = bytes.fromhex("070400000008f0d2")  # a frame pymodbus keeps to append to an ERROR


def _logged(*calls: tuple[str, bytes | None]) -> list[str]:
    """What reaches pymodbus's logger's handlers for ``calls``: (line, None) logs a line, ("", frame)
    keeps a frame received."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(PYMODBUS_LOGGER)
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        Log.get_last_frames()  # none kept from before
        for line, frame in calls:
            if frame is None:
                Log.error(line)
            else:
                Log.transport_dump(Log.RECV_DATA, frame, b"")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return [r.getMessage() for r in records]


@pytest.mark.parametrize("first", [ABSENT, KEPT])
def test_a_repeating_line_goes_as_the_line_it_stands_for(first: str) -> None:
    texts = _logged((first, None), ("", ASKED_OF_UNIT_7), (first, None))
    if first == ABSENT:  # dropped, and its stand-in with its frames too
        assert texts == [], texts
    else:  # kept, and its stand-in too
        assert texts[0] == KEPT and texts[1].startswith("Repeating....") and len(texts) == 2, texts
