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

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.spool import Spool, SpoolUnusable
from tests.gateway.file_size_limit import no_file_grows_past
from tests.gateway.spool_damage import overwrite_pages, readable_ids, readings, rows, table_pages, write_spool

_T = TypeVar("_T")


def raised_by(call: Callable[[], _T]) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_a_salvage_that_cannot_make_a_new_spool_leaves_the_file_in_place_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500), sealed_batches=30)
    original = rows(path)
    bad = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")[1]
    expected = {row for row in original if row[0] in readable_ids(path, [bad])}
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
