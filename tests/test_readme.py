"""What the README's quick start shows matches what the demo does now."""

from __future__ import annotations

import re
from pathlib import Path

from collector.migrate import migration_files

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_demo_transcript_counts_the_migrations_a_fresh_database_gets() -> None:
    """It said 29 when a fresh demo applied 39: each new migration makes it stale again."""
    (shown,) = re.findall(r"· database ready \((\d+) migrations applied", README.read_text(encoding="utf-8"))
    assert int(shown) == len(migration_files())


def test_the_backup_passage_s_restore_check_counts_the_migrations_there_are() -> None:
    """ "70 migrations restored" stood when there were 73: a restore checked before the newest
    migrations says nothing of them. When this fails, check the restore again as the passage says
    (pg_dump -Fc, restore as TimescaleDB asks, ``collector migrate`` applies nothing), or say which
    migrations the check did not have."""
    (shown,) = re.findall(r"and (\d+) migrations restored", README.read_text(encoding="utf-8"))
    assert int(shown) == len(migration_files())
