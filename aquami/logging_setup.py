"""One log format for every long-running command: UTC ISO 8601 time with ``Z``, level, logger, message.

``2026-12-05T17:15:48.372Z WARNING collector.service: database unavailable (…)``. Before, the gateway
and the collector logged the host's local time with no zone (``2026-12-05 11:41:49,736``, in New
York), and the server's lines had no time at all (uvicorn's own format; the app's own warnings went
through Python's last-resort handler, message only).
"""

from __future__ import annotations

import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NEWLINE = re.compile(r"\s*\n\s*")


class UtcFormatter(logging.Formatter):
    """``%(asctime)s`` as ISO 8601 in UTC, to the millisecond, whatever the host's zone (``TZ``);
    the message on one line (psycopg's and psycopg_pool's hold a newline and a tab: a record was two
    lines, the second with no time). A traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _NEWLINE.sub(" ", record.message)
        return super().formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_config(level: int | str = logging.INFO) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the process: every logger to stderr in :data:`FORMAT`;
    uvicorn's access log to stdout, as uvicorn has it, in the same format. Given to uvicorn as its
    ``log_config``, so the server's lines are as the gateway's and the collector's."""
    formatter = {"()": f"{__name__}.UtcFormatter", "fmt": FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"utc": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "utc", "stream": "ext://sys.stderr"},
            "stdout": {"class": "logging.StreamHandler", "formatter": "utc", "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }


def configure_logging(level: int | str = logging.INFO) -> None:
    """The process's logging as :func:`log_config` says."""
    logging.config.dictConfig(log_config(level))
