"""The access log without secrets: the sign-in link carries an API key in its query string
(``/login?key=…``, what the demo prints), and uvicorn logs every request line whole."""

from __future__ import annotations

import logging
import re

_SECRET_IN_QUERY = re.compile(r"([?&]key=)[^&#\s]*")


class RedactKeys(logging.Filter):
    """Replaces the value of a ``key`` query parameter in uvicorn's access-log records by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log(logger: logging.Logger | None = None) -> None:
    """Install :class:`RedactKeys` on uvicorn's access logger, once however many apps are made."""
    logger = logger or logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in logger.filters):
        logger.addFilter(RedactKeys())
