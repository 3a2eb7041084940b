"""What tests of VEE back-runs share: running ``aquami collector vee --from … --to …`` as an
operator would, and counting the estimates each back-run deleted, by the reason it gave."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from typer.testing import CliRunner

from aquami.cli import app


def back_run(url: str, start: datetime, end: datetime) -> dict[str, Any]:
    """``aquami collector vee --from START --to END``: its JSON report."""
    result = CliRunner().invoke(
        app,
        ["collector", "vee", "--from", start.isoformat(), "--to", end.isoformat()],
        env={"AQUAMI_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output)
    return report


def estimates_deleted_by(url: str) -> dict[str, int]:
    """How many estimates ``reading_history`` says were deleted, by who deleted them
    (``vee:re-slot``, ``vee:no-estimate`` …)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT superseded_by, count(*) FROM reading_history WHERE quality = 'estimated' GROUP BY 1"
        ).fetchall()
    return dict(rows)
