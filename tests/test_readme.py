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
