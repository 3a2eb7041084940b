"""A span recorded before (an installation, a service agreement) moved to the times a file corrects.

The span moves in two steps: first narrowed to what the recorded and the corrected spans share (a
later start, an earlier end), then, once every other row of the file has its end, widened to the
corrected span. Neither step overlaps another row, whatever the file's order: the database checks its
no-overlap constraints row by row, and the corrected span overlaps none of the file's others.
"""

from __future__ import annotations

from datetime import datetime


def span_step(
    recorded: tuple[datetime, datetime | None], corrected: tuple[datetime, datetime | None], *, widen: bool
) -> tuple[datetime, datetime | None]:
    """The span's start and end (None: open) at this step: the ``corrected`` span when ``widen``,
    else the part of it that lies within ``recorded``."""
    if widen:
        return corrected
    (since, until), (new_since, new_until) = recorded, corrected
    if until is None:
        end = new_until
    elif new_until is None:
        end = until
    else:
        end = min(new_until, until)
    return max(new_since, since), end
