"""What a spool's opening logs: a new spool says it is new, an earlier version's each migration."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.spool import _MIGRATIONS, Spool
from tests.gateway.test_pulse_wrap import SPOOL_65273A0


def _opened(path: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    caplog.set_level(logging.INFO, logger="gateway.spool")
    spool = Spool(path)
    version = spool._db.execute("PRAGMA user_version").fetchone()[0]
    spool.close()
    assert version == len(_MIGRATIONS)
    return [r.getMessage().removeprefix(f"spool {path}: ") for r in caplog.records if r.name == "gateway.spool"]


def test_a_new_spool_says_it_is_new_and_migrates_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before, a gateway's first start logged `none there, a new one created`, then `schema migrated
    to version 1 (_add_pulse_count_m3)` and `… version 2 (_add_pulse_before_restart)`: an operator
    read that an old spool had been found and changed."""
    path = tmp_path / "gw-1.sqlite"
    assert _opened(path, caplog) == ["none there, a new one created"]
    assert _opened(path, caplog) == []  # opened again: nothing to say


def test_an_earlier_versions_spool_still_says_each_migration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gw-1.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(SPOOL_65273A0)
    old.close()
    said = _opened(path, caplog)
    assert [line for line in said if line.startswith("schema migrated")] == [
        f"schema migrated to version {number} ({migration.__name__})"
        for number, migration in enumerate(_MIGRATIONS, start=1)
    ]
    assert _opened(path, caplog) == []
