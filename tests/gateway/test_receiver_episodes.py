"""A wireless M-Bus receiver that will not open (a stick left out) is said once per episode: its first
failure with the reason, a reminder every ``remind_every_s`` (an hour in service) while it goes on,
and its working again once, with how many tries failed.

Before, each try was a warning: with the reopening wait capped at 30 s, 2,880 a day.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

import pytest
import serial

from gateway.wmbus import WMBusListener
from tests.gateway.test_wmbus import _radio

REMIND_S = 1.0  # the reminders' interval in this test (an hour in service)


def test_a_receiver_left_out_is_said_once_reminded_and_its_return_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    device = tmp_path / "ttyRADIO"  # not there until the stick is "plugged in" (a pty linked there)
    listener = WMBusListener(
        _radio(str(device)),
        on_reading=lambda reading: asyncio.sleep(0),
        on_heard=lambda meter, ok, error=None: None,
        remind_every_s=REMIND_S,
    )
    real_open = listener._open
    failed_opens = 0

    def counted_open() -> serial.Serial:
        nonlocal failed_opens
        try:
            return real_open()
        except Exception:
            failed_opens += 1
            raise

    listener._open = counted_open  # type: ignore[method-assign]
    master, slave = os.openpty()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        try:
            while failed_opens < 4:  # waits of 0.25-0.5, 0.5-1, 1-2 s between: about 2.5 s
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
            device.symlink_to(os.ttyname(slave))
            while not listener.port_open:  # tried again after its wait (2-4 s)
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
            for _ in range(150):  # its first read (0.2 s at most) says it works again
                if any("works again" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    try:
        with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
            asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        os.close(master)
        os.close(slave)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.wmbus"]
    first, *reminders, back = said
    assert first[0] == logging.WARNING, first
    assert first[1].startswith(
        f"radio: cannot open {device}: No such file or directory "
        "(unplugged, or another device name? ls /dev/serial/by-id/); trying again in "
    ), first
    assert first[1].endswith(" s (said again every 1 s while it fails, and once it works)"), first
    # before: a warning for each of the failed tries; now the first, and one reminder per interval at most
    assert len(reminders) < failed_opens - 1, said
    assert reminders, said  # the fourth try comes at least 1.75 s after the first
    for level, text in reminders:
        assert level == logging.WARNING, text
        assert re.fullmatch(
            rf"radio: receiver on {device} still failing, \d+ tries failed since 20\S+Z, the last: cannot open "
            rf"{device}: No such file or directory \(unplugged, or another device name\? ls /dev/serial/by-id/\)",
            text,
        ), text
    assert back[0] == logging.INFO, back
    assert re.fullmatch(rf"radio: receiver on {device} works again after \d+ s, {failed_opens} tries failed", back[1])
