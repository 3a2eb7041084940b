"""A spool no longer usable (its damage met while running, the salvage failed for want of room) under
the gateway's writer: the readings polled until the gateway's stop lands are not stored, and that is
said once, in one line. Before, each batch the writer committed logged "cannot write to the spool"
with a full traceback.

The spool, its damage and the disk refusing the salvage's new spool are real (as in
tests/gateway/test_spool_salvage_fails.py); the writer is the gateway's own, fed as polls feed it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from aquami.contracts.reads import Reading
from gateway.config import parse_config_text
from gateway.service import Gateway
from gateway.spool import SpoolUnusable
from tests.gateway.file_size_limit import no_file_grows_past
from tests.gateway.helpers import config_text
from tests.gateway.spool_damage import T0, overwrite_pages, readings, table_pages, write_spool

BATCHES = 5


def test_the_writer_says_an_unusable_spool_once_in_a_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    text = config_text("mqtt://127.0.0.1:1", {"b": 1}, {"b": [1]}, str(path), gateway_id="gw-unusable")
    gateway = Gateway(parse_config_text(text))
    try:
        gateway.spool._db.execute("PRAGMA cache_size = 1")
        overwrite_pages(path, [bad], b"\xff")
        with no_file_grows_past(1024), pytest.raises(SpoolUnusable):
            gateway.spool.sealed_batches(limit=1000)  # as the publisher reads them: the salvage fails
        assert gateway.spool.unusable is not None

        async def polls() -> list[BaseException]:
            stop = asyncio.Event()
            writer = asyncio.create_task(gateway._writer(stop))
            refused: list[BaseException] = []
            for n in range(BATCHES):  # one poll's reading after another: a batch each
                reading = Reading(f"WM-{n}", T0, 1.0 + n)
                try:
                    await gateway.spool_reading(reading)
                except SpoolUnusable as error:
                    refused.append(error)
            stop.set()
            gateway._wake_writer.set()
            await writer
            return refused

        with caplog.at_level(logging.INFO, logger="gateway.service"):
            refused = asyncio.run(polls())
    finally:
        gateway.spool.close()
    assert len(refused) == BATCHES and gateway.readings_not_spooled == BATCHES
    said = [r for r in caplog.records if r.name == "gateway.service"]
    assert [r.getMessage() for r in said] == [
        f"readings are not stored from now on, the gateway stops: {gateway.spool.unusable}"
    ]
    assert said[0].exc_info is None  # no traceback (before: one for each of the 5 batches)
