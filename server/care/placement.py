"""Meterization records written in several statements, their enquiries placed once at the end.

Server migration 0042's triggers place an alert's enquiry (its service point and account as of the
alert's detection) after every statement that writes installations or agreements. A writer whose
statements belong together (register-accounts: a move-out, then the move-in; register-meters: a
removal recorded, then the new fitting) would have the enquiry told of the state between them
("no account recorded", "no longer fitted anywhere"). Such a writer holds the triggers off for its
transaction (``aquami.place_enquiries_later``) and places the enquiries of what it wrote once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

#: While on (in a transaction), writing installations or agreements leaves the enquiries to the writer.
PLACE_ENQUIRIES_LATER = "aquami.place_enquiries_later"


@contextmanager
def placing_enquiries_once(
    conn: psycopg.Connection, meters: Sequence[str] = (), points: Sequence[str] = ()
) -> Iterator[psycopg.Cursor]:
    """A cursor in a transaction (a savepoint within the caller's) whose writes place no enquiry;
    the enquiries of ``meters`` and ``points`` are placed once the block has written them."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"SELECT set_config('{PLACE_ENQUIRIES_LATER}', 'on', true)")
        yield cur
        cur.execute(f"SELECT set_config('{PLACE_ENQUIRIES_LATER}', '', true)")
        cur.execute("SELECT place_enquiries(%s, %s)", (list(meters), list(points)))
