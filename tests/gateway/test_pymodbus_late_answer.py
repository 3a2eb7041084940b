"""pymodbus's "ERROR: received pdu without a corresponding request, IGNORING", for an answer that
came after it stopped waiting, is dropped from the gateway's log unless pymodbus's frames are asked
for (``--verbose``), as its "No response received" line is.

Before, it came through: a read cancelled as the gateway stopped, then answered, put a stray
pymodbus ERROR just before ``gateway_stopped`` (tests/gateway/test_run_verbose.py failed on it in a
clean-clone CI run), and a late answer to a poll the scheduler had already said failed was a second,
alarming line for it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gateway import modbus_transport
from gateway.scan import PYMODBUS_LOGGER

LATE = "ERROR: received pdu without a corresponding request, IGNORING"
#: on an RTU line, a late answer that came during another unit's request (gateway.late_answers says it)
LATE_DURING_ANOTHER = "ERROR: request ask for id=6 but got id=5, Skipping."


@pytest.fixture
def pymodbus_level() -> Iterator[logging.Logger]:
    logger = logging.getLogger(PYMODBUS_LOGGER)
    level = logger.level
    yield logger
    logger.setLevel(level)


def _kept(logger: logging.Logger, message: str) -> bool:
    record = logger.makeRecord(PYMODBUS_LOGGER, logging.WARNING, __file__, 1, message, (), None)
    return bool(logger.filter(record))


def test_a_late_answer_s_line_is_dropped_unless_the_frames_are_asked_for(pymodbus_level: logging.Logger) -> None:
    assert modbus_transport._not_said_by_us in pymodbus_level.filters
    pymodbus_level.setLevel(logging.INFO)
    assert not _kept(pymodbus_level, LATE)
    assert not _kept(pymodbus_level, LATE_DURING_ANOTHER)
    assert _kept(pymodbus_level, "some other pymodbus warning")  # its other lines still show
    pymodbus_level.setLevel(logging.DEBUG)  # --verbose: every line of pymodbus's, this one too
    assert _kept(pymodbus_level, LATE)
    assert _kept(pymodbus_level, LATE_DURING_ANOTHER)
