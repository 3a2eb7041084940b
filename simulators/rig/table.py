"""The rig's live table: one row per meter, what it reads now, when it was last asked, its faults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import JustifyMethod
from rich.table import Table

COLUMNS = ("meter", "protocol", "register", "flow m3/h", "alarms", "last request", "faults")


#: The columns a technician copies or compares to the gateway's readings, shown whole however
#: narrow the terminal (a meter id over 24 characters folds onto a second line): the other columns
#: wrap, or fold a word wider than themselves, to make room. Before, in an 80-column terminal rich
#: cut them all alike: `DMA1-IN…`, `modbus_…`, a register of `51864.4…`.
WHOLE = ("meter", "protocol", "register", "flow m3/h")


def render(rows: Sequence[dict[str, Any]], title: str = "aquami rig") -> Table:
    # no side edges and no lines between columns but spaces: the 14 characters the full box drew
    # go to the faults and alarms an 80-column terminal has room for
    table = Table(
        title=title, expand=False, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    cells = [_cells(row) for row in rows]
    for index, column in enumerate(COLUMNS):
        justify: JustifyMethod = "right" if column in ("register", "flow m3/h") else "left"
        if column in WHOLE:
            widest = max((len(line) for row in cells for line in row[index].splitlines()), default=0)
            if column == "meter":  # an id may be 64 characters: a longer one than 24 folds, never cut
                table.add_column(column, overflow="fold", min_width=min(widest, 24))
            else:
                table.add_column(column, justify=justify, no_wrap=True, min_width=widest)
        else:
            table.add_column(column, justify=justify, overflow="fold")
    for row, values in zip(rows, cells, strict=True):
        table.add_row(*values, style="red" if row["faults"] else None)
    return table


def _cells(row: dict[str, Any]) -> list[str]:
    age = row["last_request_age_s"]
    return [
        row["meter"],
        row["protocol"],
        row["register"],
        "-" if row["flow_m3h"] is None else f"{row['flow_m3h']:.3f}",
        ", ".join(row["alarms"]) or "-",
        "never" if age is None else f"{age:.0f} s ago",
        ", ".join(row["faults"]) or "-",
    ]
