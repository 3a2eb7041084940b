"""The rig's live table: one row per meter, what it reads now, when it was last asked, its faults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

COLUMNS = ("meter", "protocol", "register", "flow m3/h", "alarms", "last request", "faults")


def render(rows: Sequence[dict[str, Any]], title: str = "aquami rig") -> Table:
    table = Table(title=title, expand=False)
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("register", "flow m3/h") else "left")
    for row in rows:
        age = row["last_request_age_s"]
        table.add_row(
            row["meter"],
            row["protocol"],
            row["register"],
            "-" if row["flow_m3h"] is None else f"{row['flow_m3h']:.3f}",
            ", ".join(row["alarms"]) or "-",
            "never" if age is None else f"{age:.0f} s ago",
            ", ".join(row["faults"]) or "-",
            style="red" if row["faults"] else None,
        )
    return table
