"""The access log without secrets: the sign-in link carries an API key in its query string
(``/login?key=…``, what the demo prints), and uvicorn logs every request line whole."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

# a query parameter: its separator, its name as sent, "=", its value
_PARAMETER = re.compile(r"([?&;])([^=&;#\s]*)=([^&;#\s]*)")


def _hide_keys(request_line: str) -> str:
    """The request line with the value of every parameter named ``key`` as ``***``. The name is
    compared percent-decoded, as the server reads it: ``k%65y=`` is a key too."""
    return _PARAMETER.sub(
        lambda m: f"{m[1]}{m[2]}=***" if unquote_plus(m[2]).strip().lower() == "key" else m[0], request_line
    )


class RedactKeys(logging.Filter):
    """Replaces the value of a ``key`` query parameter in uvicorn's access-log records by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_hide_keys(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log(logger: logging.Logger | None = None) -> None:
    """Install :class:`RedactKeys` on uvicorn's access logger, once however many apps are made."""
    logger = logger or logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in logger.filters):
        logger.addFilter(RedactKeys())
