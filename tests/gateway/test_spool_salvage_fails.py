"""A salvage that fails while the gateway runs: the spool meets damage, and no new spool can be made
to salvage it into (the disk will not take the new file's first pages). The damaged file goes back in
its place and the spool says, at every call, that it cannot be used (:class:`SpoolUnusable`); its
owner is told once (the gateway stops, exit 1). The next start salvages the file, as at any start.

Before, the damaged file stayed set aside and the spool's connection closed: every later call
failed with "Cannot operate on a closed database" until a restart, and the restart made a new, empty
spool beside the file set aside, its readings never salvaged.

The disk refusing the new file is real, not mocked: the process's largest file size
(``RLIMIT_FSIZE``) is lowered below a page while the call runs, so the kernel refuses SQLite's writes
(EFBIG: "disk I/O error"), as a full card refuses them (ENOSPC); reading the damaged file needs none."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

import gateway.spool
from gateway.config import parse_config_text
from gateway.service import Gateway
from gateway.spool import Spool, SpoolUnusable
from gateway.spool_salvage import put_back
from tests.gateway.file_size_limit import limit_file_size, no_file_grows_past
from tests.gateway.helpers import config_text
from tests.gateway.spool_damage import overwrite_pages, readable_ids, readings, rows, table_pages, write_spool
from tests.services import free_port

_T = TypeVar("_T")

AQUAMI = str(Path(sys.executable).with_name("aquami"))


def raised_by(call: Callable[[], _T]) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_a_salvage_that_cannot_make_a_new_spool_leaves_the_file_in_place_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    original = rows(path)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    readable = readable_ids(path, [bad])  # once: the file is read whole for it
    expected = {row for row in original if row[0] in readable}
    told: list[str] = []
    spool = Spool(path)
    try:
        spool.on_unusable = told.append
        spool._db.execute("PRAGMA cache_size = 1")  # (a long-running gateway's memory no longer holds the page)
        overwrite_pages(path, [bad], b"\xff")
        with no_file_grows_past(1024):
            first = raised_by(lambda: spool.sealed_batches(limit=1000))
        later = raised_by(lambda: spool.append(readings(1)))
        assert isinstance(later, SpoolUnusable) and str(later) == str(first)  # not "closed database"
        assert isinstance(first, SpoolUnusable) and "no new spool can be made" in str(first)
        assert told == [str(first)]
        assert spool.messages_waiting() == 0 and spool.depth() == len(original)
    finally:
        spool.close()
    assert [p.name for p in tmp_path.iterdir() if "damaged" in p.name] == []  # in place (its -wal beside it)
    again = Spool(path)  # the next start
    try:
        assert again.damage is not None and again.damage.readings_salvaged == len(expected) > 0
    finally:
        again.close()
    assert rows(path) == expected


def test_a_running_gateway_whose_salvage_fails_stops_with_its_reason(tmp_path: Path) -> None:
    """The gateway running on it: the spool's damage met (as the publisher reads batches), no new spool
    can be made, and the gateway stops on its own (``aquami gateway run`` exits 1, and its unit starts
    it again) with the spool's reason; its status after the stop is still told."""
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    text = config_text("mqtt://127.0.0.1:1", {"b": 1}, {"b": [1]}, str(path), gateway_id="gw-full")
    gateway = Gateway(parse_config_text(text))

    async def scenario() -> BaseException | None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, drain_timeout=0))
        await asyncio.sleep(0.2)
        gateway.spool._db.execute("PRAGMA cache_size = 1")
        overwrite_pages(path, [bad], b"\xff")
        try:
            with no_file_grows_past(1024):
                await asyncio.to_thread(gateway.spool.sealed_batches, 0, 1000)  # as the publisher reads them
                await asyncio.wait_for(stop.wait(), 5)
        except SpoolUnusable as error:
            raised: BaseException | None = error
        else:
            raised = None
        await asyncio.wait_for(stop.wait(), 5)
        await task
        return raised

    raised = asyncio.run(scenario())
    assert raised is not None and gateway.failure == str(raised)
    assert "no new spool can be made" in gateway.failure
    assert gateway.status()["state"] == "offline"
    assert [p.name for p in tmp_path.iterdir() if "damaged" in p.name] == []


def test_gateway_run_whose_salvage_fails_at_its_start_exits_1_in_one_line_the_file_put_back(tmp_path: Path) -> None:
    """``aquami gateway run`` on a damaged spool, its disk with room to open it (its ``-shm``) but not for
    the new spool the salvage fills: exit 1 (its unit starts it again) with one line that says the file
    is damaged, why it was not salvaged, and that it is left in place; the file is back under its own
    name, byte for byte, and the start that has room salvages it.

    Before: the same exit, but quick_check's finding broke the line in two (``(*** in database main
    ***`` on its own line), and the log said ``spool …: none there, a new one created`` first, of the
    salvage's new spool, removed a moment later."""
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    readable = readable_ids(path, [bad])  # once: the file is read whole for it
    expected = {row for row in rows(path) if row[0] in readable}
    overwrite_pages(path, [bad], b"\xff")
    damaged = path.read_bytes()
    config = tmp_path / "gw.toml"
    config.write_text(config_text(f"mqtt://127.0.0.1:{free_port()}", {"b": free_port()}, {"b": [1]}, str(path)))
    done = subprocess.run(
        [AQUAMI, "gateway", "run", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_file_size(64 * 1024),  # the damaged file's -shm (32 KiB) fits, 1500 readings do not
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    said = re.fullmatch(
        rf"error: cannot open the spool {re.escape(str(path))}: it is damaged \((Page {bad}: .+)\), and no new "
        r"spool can be made to salvage it into: disk I/O error; it is left in place, salvaged at the next start "
        r"that has room",
        line,
    )
    assert said is not None, line
    assert "\n" not in said[1] and "***" not in said[1]  # SQLite's finding: btreeInitPage() returns error code 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.sqlite", "gw.sqlite.lock", "gw.toml"]
    assert path.read_bytes() == damaged
    _the_next_start_salvages(path, expected)  # the next start, with room


def _aside_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".damaged-" in p.name)


def test_a_put_back_refused_names_the_files_left_aside_and_the_hand_they_need(tmp_path: Path) -> None:
    """The kernel refusing the rename (the spool's name taken by a folder): the error names the damaged
    file, where it was to go, and the renames an operator must make before the next start (which would
    otherwise make a new, empty spool and never salvage it). Before: the bare rename's
    ``[Errno 21] Is a directory: '…damaged-…' -> '…gw.sqlite'``, with nothing of a spool or a hand."""
    spool, aside = tmp_path / "gw.sqlite", tmp_path / "gw.sqlite.damaged-20261207T101500Z"
    aside.write_bytes(b"the damaged file")
    aside.with_name(aside.name + "-wal").write_bytes(b"its WAL")
    spool.mkdir()
    (spool / "something").write_bytes(b"")  # a folder that is not empty: no file can take its name
    with pytest.raises(OSError) as refused:
        put_back(aside, spool)
    assert str(refused.value) == (
        f"the damaged spool file {aside} cannot be put back as {spool} (Is a directory): rename "
        "gw.sqlite.damaged-20261207T101500Z to gw.sqlite, gw.sqlite.damaged-20261207T101500Z-wal to gw.sqlite-wal "
        f"in {tmp_path} by hand before the gateway starts again, else that start makes a new, empty spool and "
        "does not salvage it"
    )
    assert aside.read_bytes() == b"the damaged file" and _aside_files(tmp_path) == [aside.name, aside.name + "-wal"]


def _name_taken_before_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder made at the spool's name as the salvage puts the damaged file back: the rename is then
    refused by the kernel (EISDIR). The put-back itself runs as it is."""

    def taken_then_put_back(aside: Path, spool: Path) -> None:
        spool.mkdir()
        (spool / "something").write_bytes(b"")
        put_back(aside, spool)

    monkeypatch.setattr(gateway.spool, "put_back", taken_then_put_back)


def test_a_salvage_at_a_start_whose_put_back_fails_is_the_spools_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a start (``gateway run`` says a SpoolUnusable in one ``error:`` line, exit 1): before, the
    rename's OSError went out of Spool() as it was, a traceback."""
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    overwrite_pages(path, [bad], b"\xff")
    _name_taken_before_put_back(monkeypatch)
    with no_file_grows_past(64 * 1024):  # room to open the damaged file, none for the salvage's 1500 readings
        refused = raised_by(lambda: Spool(path))
    (aside,) = _aside_files(tmp_path)
    assert isinstance(refused, SpoolUnusable)
    said = str(refused)
    assert said.startswith(f"cannot open the spool {path}: it is damaged (Page {bad}: ")
    assert "no new spool can be made to salvage it into: disk I/O error; " in said
    assert said.endswith(
        f"the damaged spool file {tmp_path / aside} cannot be put back as {path} (Is a directory): rename {aside} "
        f"to gw.sqlite in {tmp_path} by hand before the gateway starts again, else that start makes a new, empty "
        "spool and does not salvage it"
    )
    assert "\n" not in said


def test_a_running_salvage_whose_put_back_fails_leaves_the_spool_unusable_and_its_owner_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While running: the spool is unusable (every call says why, naming the file left aside) and its
    owner is told once (the gateway stops, exit 1). Before, the rename's OSError went to the caller,
    the owner was not told, and every later call failed on "Cannot operate on a closed database"."""
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    told: list[str] = []
    spool = Spool(path)
    try:
        spool.on_unusable = told.append
        spool._db.execute("PRAGMA cache_size = 1")
        overwrite_pages(path, [bad], b"\xff")
        _name_taken_before_put_back(monkeypatch)
        with no_file_grows_past(1024):
            first = raised_by(lambda: spool.sealed_batches(limit=1000))
        later = raised_by(lambda: spool.append(readings(1)))
    finally:
        spool.close()
    aside = _aside_files(tmp_path)[0]  # (its -wal and -shm beside it, left aside too)
    assert isinstance(first, SpoolUnusable) and isinstance(later, SpoolUnusable)
    assert str(later) == str(first) and told == [str(first)]
    assert f"the damaged spool file {tmp_path / aside} cannot be put back as {path} (Is a directory)" in str(first)


def _damaged_with_no_wal(path: Path) -> tuple[int, set[tuple[int, str, int | None]]]:
    """A spool of 1500 readings damaged while the gateway was stopped (its last close checkpointed it:
    no ``-wal`` or ``-shm`` beside it), one of its readings' pages overwritten: that page's number, and
    the readings a salvage can give."""
    write_spool(path, readings(1500), sealed_batches=30)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    readable = readable_ids(path, [bad])  # once: the file is read whole for it
    expected = {row for row in rows(path) if row[0] in readable}
    sound = sqlite3.connect(path)  # (the read-only looks above left a -wal and -shm: a clean close takes them)
    sound.execute("PRAGMA user_version").fetchone()
    sound.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["gw.sqlite", "gw.sqlite.lock"]
    overwrite_pages(path, [bad], b"\xff")
    return bad, expected


def test_a_salvage_that_read_the_damaged_file_and_failed_leaves_nothing_beside_it(tmp_path: Path) -> None:
    """The salvage reads the damaged file (its new spool made), then the disk refuses the new spool
    its readings: the damaged file goes back in its place with nothing beside it that was not there.
    Before: reading it (``mode=ro``) made an empty ``-wal`` and a 32 KiB ``-shm`` beside it, put back
    with it as its own."""
    path = tmp_path / "gw.sqlite"
    bad, expected = _damaged_with_no_wal(path)
    damaged = path.read_bytes()
    with no_file_grows_past(160 * 1024):  # the new spool made (its schema), not filled with 1500 readings
        refused = raised_by(lambda: Spool(path))
    assert isinstance(refused, SpoolUnusable), refused
    assert str(refused).startswith(f"cannot open the spool {path}: it is damaged (Page {bad}: ")
    assert str(refused).endswith("it is left in place, salvaged at the next start that has room")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.sqlite", "gw.sqlite.lock"]  # before: -wal, -shm too
    assert path.read_bytes() == damaged
    _the_next_start_salvages(path, expected)  # the next start, with room


def test_a_failed_salvage_puts_the_damaged_file_back_by_itself_beside_a_new_spool_file_it_cannot_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The salvage has read the damaged file (its new spool made), the disk refuses the new spool its
    readings, and one of that new spool's files cannot be removed (its ``-wal``'s name taken by a
    folder as the salvage runs: the kernel refuses the unlink, EISDIR). The damaged file, which had no
    ``-wal``, goes back in its place by itself: the error names only the file an operator must remove,
    and once it is removed the next start salvages the damaged file.

    Before: reading the damaged file (``mode=ro``) made a ``-wal`` beside it, which the put-back could
    not rename over the folder: the error said the damaged file "cannot be put back" and asked an
    operator to rename its ``-wal`` and ``-shm`` by hand, left aside. (And before that, the unlink's
    bare IsADirectoryError went out of Spool(), a traceback, the damaged file left aside.)"""
    path = tmp_path / "gw.sqlite"
    bad, expected = _damaged_with_no_wal(path)
    damaged = path.read_bytes()
    salvage = gateway.spool.salvage_into
    new_wal = path.with_name("gw.sqlite-wal")

    def wal_name_taken_then_salvage(aside: Path, spool: sqlite3.Connection) -> tuple[int, int | None, int]:
        new_wal.unlink()  # (the new spool's connection keeps its WAL open: SQLite does not see it)
        new_wal.mkdir()
        return salvage(aside, spool)

    monkeypatch.setattr(gateway.spool, "salvage_into", wal_name_taken_then_salvage)
    with no_file_grows_past(160 * 1024):  # the new spool made (its schema), not filled with 1500 readings
        refused = raised_by(lambda: Spool(path))
    assert isinstance(refused, SpoolUnusable), refused  # before: IsADirectoryError, the put-back never run
    _says_the_new_wal_is_left_and_the_damaged_file_back(refused, path, bad)
    assert path.read_bytes() == damaged and _aside_files(tmp_path) == []  # back, by itself, nothing left aside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.sqlite", "gw.sqlite-wal", "gw.sqlite.lock"]
    monkeypatch.undo()
    new_wal.rmdir()  # the operator's hand, as the error asks
    _the_next_start_salvages(path, expected)  # the next start, with room


def test_a_new_spool_file_left_behind_by_a_failed_salvage_is_named_and_the_damaged_file_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool damaged while the gateway was stopped (its last close checkpointed it: no ``-wal`` or
    ``-shm`` beside it), at a start whose disk has room to open it but not to make the new spool the
    salvage fills; one of that new spool's files cannot be removed (its ``-wal``'s name taken by a
    folder as the salvage removes it: the kernel refuses the unlink, EISDIR). The damaged file still
    goes back in its place, byte for byte: the error says so, and names the file an operator must
    remove first; once removed, the next start salvages the file."""
    path = tmp_path / "gw.sqlite"
    bad, expected = _damaged_with_no_wal(path)
    damaged = path.read_bytes()
    new_wal = path.with_name("gw.sqlite-wal")
    unmake = Spool._unmake_new_spool

    def wal_name_taken_then_unmake(spool: Spool) -> list[gateway.spool._NotRemoved]:
        new_wal.unlink(missing_ok=True)
        new_wal.mkdir()
        return unmake(spool)

    monkeypatch.setattr(Spool, "_unmake_new_spool", wal_name_taken_then_unmake)
    with no_file_grows_past(64 * 1024):  # room to open the damaged file (its -shm), none for a new spool
        refused = raised_by(lambda: Spool(path))
    assert isinstance(refused, SpoolUnusable), refused
    _says_the_new_wal_is_left_and_the_damaged_file_back(refused, path, bad)
    assert path.read_bytes() == damaged and _aside_files(tmp_path) == []  # back, nothing left aside
    monkeypatch.undo()
    new_wal.rmdir()  # the operator's hand, as the error asks
    _the_next_start_salvages(path, expected)  # the next start, with room


def _the_next_start_salvages(path: Path, expected: set[tuple[int, str, int | None]]) -> None:
    """A start with room (no file-size limit) salvages the damaged file at ``path``: every reading
    ``expected`` (the readable ones) is in the new spool."""
    again = Spool(path)
    try:
        assert again.damage is not None and again.damage.readings_salvaged == len(expected) > 0
    finally:
        again.close()
    assert rows(path) == expected


def _says_the_new_wal_is_left_and_the_damaged_file_back(refused: SpoolUnusable, path: Path, bad: int) -> None:
    """``refused`` (one line) names the damaged page, the new spool's ``-wal`` an operator must remove
    from ``path``'s folder, and that the damaged file is back in its place."""
    said = str(refused)
    assert said.startswith(f"cannot open the spool {path}: it is damaged (Page {bad}: ")
    assert said.endswith(
        "no new spool can be made to salvage it into: disk I/O error; the salvage's new spool file gw.sqlite-wal "
        f"(Is a directory) cannot be removed: remove it from {path.parent} by hand before the gateway starts "
        "again, else that start takes it for the damaged file's own; the damaged file is back in its place"
    )
    assert "\n" not in said
