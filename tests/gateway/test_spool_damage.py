"""A damaged spool file (bad pages, cut short, its header spoilt) no longer stops the gateway for ever:
it is set aside, kept, every reading still readable is salvaged into a new spool with its identity,
and the gateway says so (gateway.spool_salvage). Before, ``Spool`` raised ``SpoolUnusable`` at each
start (``aquami gateway run`` exit 1, started again, for ever), or, for damage in pages the start
did not read, opened it and failed on it later, at every poll or every MQTT session."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aquami.contracts.status import schema_errors as status_errors
from gateway.config import parse_config_text
from gateway.service import Gateway
from gateway.spool import Spool, SpoolDamaged, SpoolInUse
from tests.gateway.helpers import config_text, until
from tests.gateway.spool_damage import (
    overwrite_pages,
    page_size,
    readable_ids,
    readings,
    rows,
    table_pages,
    write_spool,
)

AT = "20"  # every set-aside name begins NAME.damaged-20…: the year


def set_aside_files(folder: Path, name: str) -> list[Path]:
    """The damaged files set aside (their -wal and -shm beside them, if any, not listed)."""
    return sorted(p for p in folder.glob(f"{name}.damaged-{AT}*") if not p.name.endswith(("-wal", "-shm")))


def leaf_pages(path: Path) -> list[int]:
    return sorted(p for p, where in table_pages(path, "readings").items() if where != "/")


def test_damaged_pages_are_set_aside_kept_and_every_readable_reading_salvaged_with_its_identity(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=6)
    original = rows(path)
    (next_seq,) = sqlite3.connect(path).execute("SELECT value FROM counters").fetchone()
    bad = leaf_pages(path)[3]
    readable = readable_ids(path, [bad])  # once: the file is read whole for it
    expected = {row for row in original if row[0] in readable}
    overwrite_pages(path, [bad], b"\xde\xad")
    damaged_bytes = path.read_bytes()

    with caplog.at_level(logging.INFO):
        spool = Spool(path)
    try:
        assert spool.damage is not None
        assert len(expected) < len(original)  # the page held readings: some are lost
        assert spool.damage.readings_salvaged == len(expected)
        assert spool.damage.readings_lost_at_most == len(original) - len(expected)
        assert spool.depth() == len(expected)
        assert spool.next_batch_seq() == next_seq  # sealed batches keep their numbers, new ones go on after
        sealed = spool.sealed_batches()
    finally:
        spool.close()
    assert rows(path) == expected  # ids, bodies and batch_seqs as they were
    assert {b for batch in sealed for b in batch.bodies} == {body for _, body, seq in expected if seq is not None}

    (aside,) = set_aside_files(tmp_path, "gw.sqlite")
    assert aside == spool.damage.set_aside
    assert aside.read_bytes() == damaged_bytes  # kept as it was found, nothing written to it
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    said = errors[0].getMessage()
    assert f"spool {path} is damaged" in said and aside.name in said
    assert f"{len(expected)} readings and 0 events salvaged" in said
    assert f"at most {len(original) - len(expected)} readings lost" in said


def test_a_spoilt_header_is_set_aside_its_readings_read_from_their_pages_and_a_new_spool_takes_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(200))
    original = rows(path)
    with path.open("r+b") as file:
        file.write(b"not SQLite at all")  # over "SQLite format 3\0"
    spool = Spool(path)
    try:
        assert spool.damage is not None
        assert "not a database" in spool.damage.reason
        # SQLite reads none of it: every reading is read from its page (gateway.spool_pages); how many
        # were there, SQLite cannot say
        assert (spool.damage.readings_salvaged, spool.damage.readings_lost_at_most) == (200, None)
        spool.append(readings(3))
        assert spool.depth() == 203
    finally:
        spool.close()
    assert original <= rows(path)
    (aside,) = set_aside_files(tmp_path, "gw.sqlite")
    assert aside.read_bytes().startswith(b"not SQLite at all")


def test_a_file_cut_short_gives_the_readings_on_its_remaining_pages(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(2000), sealed_batches=2)
    original = rows(path)
    size = page_size(path)
    pages = os.path.getsize(path) // size
    cut_from = pages - pages // 3  # the last third gone: a write the card never finished
    readable = readable_ids(path, range(cut_from + 1, pages + 1))  # once: the file is read whole for it
    expected = {r for r in original if r[0] in readable}
    with path.open("r+b") as file:
        file.truncate(cut_from * size)
    spool = Spool(path)
    try:
        assert spool.damage is not None
        assert 0 < spool.damage.readings_salvaged == len(expected) < len(original)
    finally:
        spool.close()
    assert rows(path) == expected


def test_with_on_damage_stop_the_damaged_spool_stops_the_start_and_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(800))
    overwrite_pages(path, [leaf_pages(path)[2]], b"\x00")
    before = path.read_bytes()
    with pytest.raises(SpoolDamaged, match=r"cannot open the spool .*gw\.sqlite: it is damaged"):
        Spool(path, on_damage="stop")
    assert path.read_bytes() == before
    assert set_aside_files(tmp_path, "gw.sqlite") == []


def test_a_spool_in_use_is_not_taken_for_damaged(tmp_path: Path) -> None:
    """(Kept as it was: a spool held by another gateway is no damage, and is not set aside.)"""
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(10))
    holder = Spool(path)
    try:
        with pytest.raises(SpoolInUse):
            Spool(path)
    finally:
        holder.close()
    assert set_aside_files(tmp_path, "gw.sqlite") == []


def test_damage_met_while_running_is_set_aside_and_salvaged_and_the_call_goes_on(tmp_path: Path) -> None:
    """A page damaged after the spool opened (the card failing under it): the first read that meets
    it sets the file aside and salvages it, then gives its answer from the new spool. Before, every
    such call failed, for ever."""
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    original = rows(path)
    bad = leaf_pages(path)[1]  # in the first sealed batches, which the publisher reads first
    readable = readable_ids(path, [bad])  # once: the file is read whole for it
    expected = {row for row in original if row[0] in readable}
    said: list[str] = []
    spool = Spool(path)
    try:
        assert spool.damage is None
        spool.on_damage_found = said.append
        spool._db.execute("PRAGMA cache_size = 1")  # (a long-running gateway's memory no longer holds the page)
        overwrite_pages(path, [bad], b"\xff")
        batches = spool.sealed_batches(limit=1000)
        assert spool.damage is not None and len(said) == 1 and "malformed" in said[0]
        assert spool.damage.readings_salvaged == len(expected)
        assert {b for batch in batches for b in batch.bodies} == {body for _, body, seq in expected if seq}
        spool.append(readings(1600)[1500:])  # the new spool takes readings
        assert spool.depth() == len(expected) + 100
    finally:
        spool.close()
    assert len(set_aside_files(tmp_path, "gw.sqlite")) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(1, 1200),
    sealed=st.integers(0, 10),
    damaged=st.sets(st.integers(2, 60), min_size=1, max_size=6),
    fill=st.sampled_from([b"\x00", b"\xff", b"\x0d", b"\x05\x00", b"garbage"]),
)
def test_any_damaged_pages_give_every_readable_reading_and_nothing_else(
    tmp_path_factory: pytest.TempPathFactory, count: int, sealed: int, damaged: set[int], fill: bytes
) -> None:
    """Whichever pages are damaged (page 1, the schema and header, aside: a spoilt header is above),
    the new spool holds exactly the readings whose own pages are intact, each as it was stored."""
    folder = tmp_path_factory.mktemp("damage")
    path = folder / "gw.sqlite"
    write_spool(path, readings(count), sealed_batches=sealed, batch_size=40)
    original = rows(path)
    pages = os.path.getsize(path) // page_size(path)
    damaged = {p for p in damaged if p <= pages}
    assume(damaged)
    readable = readable_ids(path, damaged)  # once: the file is read whole for it
    expected = {row for row in original if row[0] in readable}
    overwrite_pages(path, damaged, fill)
    spool = Spool(path)
    try:
        salvage = spool.damage
    finally:
        spool.close()
    salvaged = rows(path)
    assert salvaged <= original  # nothing invented
    if salvage is None:  # the damage was in pages no reading needs (an index, free pages): all of them there
        assert salvaged == original
        return
    assert salvaged == expected  # every readable one
    assert salvage.readings_salvaged == len(expected)
    assert salvage.readings_lost_at_most is None or salvage.readings_lost_at_most >= len(original) - len(expected)


def _gateway_on(path: Path, on_damage: str) -> Gateway:
    text = config_text(
        "mqtt://127.0.0.1:1",  # never connected: what it would publish waits in the spool
        {"b": 1},
        {"b": [1]},
        str(path),
        gateway_id="gw-dmg",
        extra_spool="" if on_damage == "set_aside" else f'on_damage = "{on_damage}"',  # (the default said by none)
    )
    return Gateway(parse_config_text(text))


def _damage_under_running_gateway(
    path: Path, on_damage: str
) -> tuple[Gateway, BaseException | None, dict[str, Any] | None]:
    """Run a gateway on ``path``, damage a page of its spool under it, and have the spool read it as
    the publisher does: the gateway, what the read raised, and its status after (None: it stopped)."""
    write_spool(path, readings(1500), sealed_batches=30)
    bad = leaf_pages(path)[1]
    gateway = _gateway_on(path, on_damage)

    async def scenario() -> tuple[BaseException | None, dict[str, Any] | None]:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, drain_timeout=0))
        await asyncio.sleep(0.2)
        gateway.spool._db.execute("PRAGMA cache_size = 1")  # (a long-running gateway's memory no longer holds it)
        overwrite_pages(path, [bad], b"\xff")
        raised = None
        try:
            await asyncio.to_thread(gateway.spool.sealed_batches, 0, 1000)  # as the publisher reads them
        except sqlite3.DatabaseError as error:
            raised = error
        await until(lambda: stop.is_set() or gateway.spool.messages_waiting() > 0, 5)
        status = None if stop.is_set() else gateway.status()
        stop.set()
        await task
        return raised, status

    return gateway, *asyncio.run(scenario())


def test_damage_met_by_a_running_gateway_is_said_in_its_status_and_an_event(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    gateway, raised, status = _damage_under_running_gateway(path, "set_aside")
    assert raised is None and gateway.failure is None and status is not None
    assert status["spool_damaged"]["set_aside"] == set_aside_files(tmp_path, "gw.sqlite")[0].name
    assert status_errors(status) == []
    again = Spool(path)  # (run closed it)
    try:
        events = [json.loads(payload) for _, _, payload in again.messages_after(0, 100)]
    finally:
        again.close()
    (event,) = [e for e in events if e["event"] == "spool_damaged"]
    assert event["readings_salvaged"] == status["spool_damaged"]["readings_salvaged"] > 0


def test_with_on_damage_stop_damage_met_while_running_stops_the_gateway(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    gateway, raised, _ = _damage_under_running_gateway(path, "stop")
    assert raised is not None and "malformed" in str(raised)
    assert gateway.failure is not None and gateway.failure.startswith("the spool is damaged: ")
    assert set_aside_files(tmp_path, "gw.sqlite") == []


def test_a_damaged_root_page_loses_only_its_own_rows(tmp_path: Path) -> None:
    """The readings table's root page damaged: SQLite's b-tree leads to none of its rows, yet each
    leaf page is sound, and every reading on them is read from its page (gateway.spool_pages)."""
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(3000), sealed_batches=10)
    original = rows(path)
    (root,) = [p for p, where in table_pages(path, "readings").items() if where == "/"]
    overwrite_pages(path, [root], b"\x00")
    spool = Spool(path)
    try:
        assert spool.damage is not None and spool.damage.readings_salvaged == len(original)
    finally:
        spool.close()
    assert rows(path) == original
