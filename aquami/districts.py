"""What a district's (DMA's) name may be, wherever a METERS.csv row gives one: ``aquami server
register-meters`` storing it, and ``aquami detect`` reading it offline, hold it to the same rule,
so a file one takes the other does not refuse.

A district is the utility's own name for an area ("Hillside reservoir zone 3"), free text, not an
identifier: ``meters.dma`` and ``service_points.dma`` are ``text``. But it is a key of btree
indexes: ``meters_dma_idx``, ``alerts_dma_idx``, ``alerts_active_idx``, ``enquiries_dma_idx``,
``dma_consumption_hourly``'s primary key, and inside a district alert's id (``dma_burst/dma:NAME/…``,
the alerts' primary key and three more indexes). PostgreSQL refuses an index row over 2,704 bytes
(btree version 4, 8 kB pages; a value that compresses well may pass, one that does not fails), so a
name of about 2,700 bytes stopped ``register-meters`` with a psycopg traceback. At
:data:`DMA_MAX_LENGTH` characters a name is at most 2,000 bytes in UTF-8 (4 bytes a character at
most), leaving room for the alert id's kind and time and the other columns of those indexes, and is
still many times longer than any real district's name.

A name with a line break is refused too, as an account's name is (server/accounts/register.py): a
district is one line wherever it is shown (the web page, an alert's and its enquiry's district, a
district alert's id ``dma_burst/dma:NAME/…``, ALERTS.json), and a quoted METERS.csv field over two
lines is a broken file, not a name.
"""

from __future__ import annotations

from aquami.excerpt import quoted
from aquami.stored_times import LINE_BREAKS

#: The longest district name written to the database, or read from METERS.csv, in characters.
DMA_MAX_LENGTH = 500


def dma_refusal(dma: str) -> str | None:
    """Why the district ``dma`` cannot be stored (one line, naming the limit or the line break), or
    None when it can."""
    if len(dma) > DMA_MAX_LENGTH:
        return (
            f"dma {quoted(dma)}: a district's name is at most {DMA_MAX_LENGTH} characters, as the database indexes it"
        )
    if LINE_BREAKS.intersection(dma):
        return (
            f"dma {quoted(dma)} has a line break: a district's name is one line "
            "(a quoted field over two is a broken file)"
        )
    return None
