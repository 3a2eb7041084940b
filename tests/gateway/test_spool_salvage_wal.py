"""A damaged spool whose ``-wal`` holds committed readings (the gateway's power cut before a checkpoint):
every reading still readable, those committed only in the ``-wal`` too, is salvaged, and the salvage
leaves beside the set-aside file exactly the companions it was set aside with.

The salvage opens a set-aside file with no ``-wal`` ``immutable`` (so SQLite makes no ``-wal`` and
``-shm`` beside it), but one with a ``-wal`` that holds pages ``mode=ro``, as ``immutable`` ignores
the ``-wal``: these tests fail if the ``-wal``'s readings are lost or if its reading leaves a ``-shm``
that was not there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.spool import Spool
from gateway.spool_salvage import salvage_into
from tests.gateway.spool_damage import (
    leaf_rowids,
    overwrite_pages,
    page_size,
    readings,
    rows,
    table_pages,
    wal_pages,
    write_spool,
)

#: readings committed after the last checkpoint: in the -wal only
IN_WAL = 300


def _crash_image(folder: Path, name: str, with_shm: bool) -> tuple[Path, set[tuple[int, str, int | None]]]:
    """A spool's files as a power cut leaves them: 1500 readings checkpointed into the file, then
    ``IN_WAL`` more committed in its ``-wal`` only (its ``-shm`` kept or not), copied to ``folder /
    name``; the file's first readings page then overwritten (a bad block). Returns the file and the
    readings a salvage can give: all but those on that page."""
    live = folder / "live" / "gw.sqlite"
    live.parent.mkdir()
    write_spool(live, readings(1500), sealed_batches=30)
    data, size = live.read_bytes(), page_size(live)
    (first,) = [page for page in table_pages(live, "readings") if 1 in leaf_rowids(data, size, page)]
    on_first = set(leaf_rowids(data, size, first))
    spool = Spool(live)
    try:
        spool._db.execute("PRAGMA wal_autocheckpoint = 0")
        spool.append(readings(IN_WAL, prefix="WAL"))
        expected = {row for row in rows(live) if row[0] not in on_first}
        copy = folder / name
        for suffix in ("", "-wal", "-shm") if with_shm else ("", "-wal"):
            shutil.copyfile(live.with_name(live.name + suffix), copy.with_name(copy.name + suffix))
    finally:
        spool.close()
    assert sum('"meter_id":"WAL-' in body for _, body, _ in expected) == IN_WAL  # committed, in the -wal only
    assert len(copy.read_bytes()) == len(data) and first not in wal_pages(copy.with_name(copy.name + "-wal"))
    overwrite_pages(copy, [first], b"\xff")
    return copy, expected


@pytest.mark.parametrize("with_shm", [True, False], ids=["with its -shm", "its -shm lost"])
def test_a_set_aside_file_whose_wal_holds_committed_readings_gives_them_all_and_is_left_as_it_was(
    tmp_path: Path, with_shm: bool
) -> None:
    """The salvage reading a set-aside file with its ``-wal``: the ``-wal``'s readings salvaged with the
    file's, and the file and its ``-wal`` byte for byte as they were, no ``-shm`` made beside them.
    Before: the readings were all salvaged, but reading the file without its ``-shm`` made one."""
    aside, expected = _crash_image(tmp_path, "gw.sqlite.damaged-20261207T101500Z", with_shm)
    companions = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(aside.name))
    kept = {name: (tmp_path / name).read_bytes() for name in (aside.name, aside.name + "-wal")}
    (tmp_path / "new").mkdir()
    new = Spool(tmp_path / "new" / "gw.sqlite")
    try:
        with new._lock, new._transaction():
            salvaged, lost, _ = salvage_into(aside, new._db)
    finally:
        new.close()
    assert salvaged == len(expected) and rows(new.path) == expected
    assert lost is not None and lost > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(aside.name)) == companions
    assert {name: (tmp_path / name).read_bytes() for name in kept} == kept


def test_a_spool_damaged_with_readings_in_its_wal_gives_them_all_at_its_start(tmp_path: Path) -> None:
    """The same files under the spool's own name, as the gateway starts on them: every readable
    reading, those of the ``-wal`` too, in the new spool."""
    path, expected = _crash_image(tmp_path, "gw.sqlite", with_shm=True)
    spool = Spool(path)
    try:
        assert spool.damage is not None and spool.damage.readings_salvaged == len(expected)
    finally:
        spool.close()
    assert rows(path) == expected
