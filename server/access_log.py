"""The access log without secrets: a one-time sign-in link carries its token in its query string
(``/login?token=…``, what the demo prints; it signs in for 10 minutes), the old sign-in link an API
key (``/login?key=…``), an Open311 client may put its own there as GeoReport v2's
``api_key`` (which the server ignores), and uvicorn logs every request line whole."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from server.auth import KEY_PREFIX

# a query parameter: its separator, its name as sent, "=", its value
_PARAMETER = re.compile(r"([?&;])([^=&;#\s]*)=([^&;#\s]*)")


#: The parameters that carry a key: the sign-in links' (a one-time link's token too), and Open311's
#: (GeoReport v2 names it ``api_key``; taken and ignored in the query, it was logged whole: a customer
#: app's key in the log).
_KEY_PARAMETERS = frozenset({"key", "token", "api_key"})


def _is_a_key(name: str, value: str) -> bool:
    """A parameter that holds a key: one named as keys are, or a value that is one, whatever its
    name (``?token=aqk_…``). Both are compared percent-decoded, as the server reads them:
    ``k%65y=`` is a key too."""
    return unquote_plus(name).strip().lower() in _KEY_PARAMETERS or unquote_plus(value).strip().lower().startswith(
        KEY_PREFIX
    )


def _hide_keys(request_line: str) -> str:
    """The request line with the value of every parameter holding a key as ``***``."""
    return _PARAMETER.sub(lambda m: f"{m[1]}{m[2]}=***" if _is_a_key(m[2], m[3]) else m[0], request_line)


class RedactKeys(logging.Filter):
    """Replaces the value of a query parameter holding a key in uvicorn's access-log records by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_hide_keys(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log(logger: logging.Logger | None = None) -> None:
    """Install :class:`RedactKeys` on uvicorn's access logger, once however many apps are made."""
    logger = logger or logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in logger.filters):
        logger.addFilter(RedactKeys())
