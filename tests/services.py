"""Real services for the test suite: a Mosquitto broker and a TimescaleDB server.

Nothing here is a mock. ``scripts/test-deps`` installs the ``mosquitto`` binary and
``scripts/timescaledb-up`` starts PostgreSQL 17 + TimescaleDB (both run by ``make test``).
When they are missing the fixtures fail with a message saying so: a test that needs a
service never silently skips.

The pytest fixtures built on these are in ``tests/conftest.py``; this module does not import pytest,
so the benchmarks (``benchmarks/bench_ingest.py`` and others) start the same services without it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aquami import ports

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = REPO_ROOT / "scripts"
LOOPBACK = "127.0.0.1"
HOW_TO_FIX = "run `make test` (or `sudo scripts/test-deps` and `sudo scripts/timescaledb-up`)"


class ServiceUnavailable(RuntimeError):
    """A service the tests need is not installed or does not start."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now, outside the range outgoing connections
    take theirs from (see :mod:`aquami.ports`)."""
    return ports.free_port(LOOPBACK)


def accepts(port: int) -> bool:
    """Whether something listens on loopback ``port`` (a TCP connect succeeds within a second)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


# --- Mosquitto -----------------------------------------------------------------------------------

# MQTT 3.1.1 CONNECT (clean session, keepalive 60 s, empty client id) and DISCONNECT: enough to
# prove the broker speaks MQTT, not merely that a socket is listening.
_MQTT_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
_MQTT_CONNACK_OK = bytes([0x20, 2, 0, 0])
_MQTT_DISCONNECT = bytes([0xE0, 0])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ServiceUnavailable(f"the mosquitto binary is not installed: {HOW_TO_FIX}")
    return found


def mqtt_handshake(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an MQTT broker at host:port accepts a connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_MQTT_CONNECT)
            reply = b""
            while len(reply) < 4:
                chunk = s.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            s.sendall(_MQTT_DISCONNECT)
            return reply == _MQTT_CONNACK_OK
    except OSError:
        return False


class MosquittoBroker:
    """A private ``mosquitto`` process on a loopback port.

    The port is chosen once and kept: ``stop()`` then ``start()`` (or ``restart()``) brings the
    broker back on the same port, which is how tests take it away from clients for a while.
    With ``persistence=True`` retained messages and sessions survive a clean stop.
    """

    host = LOOPBACK

    def __init__(
        self,
        port: int | None = None,
        *,
        persistence: bool = False,
        acl: str | None = None,
        settings: Sequence[str] = (),
    ) -> None:
        """``acl``: the text of a mosquitto ACL file (what anonymous clients may read and write);
        ``settings``: more lines of mosquitto.conf (``max_packet_size 4096``)."""
        self._binary = mosquitto_binary()
        self._acl = acl
        self.settings = list(settings)
        self._port_fixed = port is not None
        self._port = port if port is not None else free_port()
        self._persistence = persistence
        self._dir = Path(tempfile.mkdtemp(prefix="aquami-mosquitto-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False  # once clients know the port it must not change

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The running broker's process id (a test freezes it with SIGSTOP)."""
        if self._proc is None or self._proc.poll() is not None:
            raise ServiceUnavailable(f"mosquitto on port {self._port} is not running: {self._log_tail()}")
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self._dir / "mosquitto.log"

    @property
    def persistence_file(self) -> Path:
        """Where mosquitto saves its in-memory state (with ``persistence=True``; ``autosave_interval``)."""
        return self._dir / "mosquitto.db"

    def _write_config(self) -> Path:
        lines = [
            f"listener {self._port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self._persistence else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self._persistence:
            lines.append(f"persistence_location {self._dir}/")
        if self._acl is not None:
            acl_file = self._dir / "acl"
            acl_file.write_text(self._acl)
            lines.append(f"acl_file {acl_file}")
        lines += self.settings
        if os.geteuid() == 0:
            # As root mosquitto would switch to the "mosquitto" user, who cannot write our temp dir.
            lines.append("user root")
        conf = self._dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        conf = self._write_config()
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self._binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            while time.monotonic() < deadline and self._proc.poll() is None:
                if mqtt_handshake(self.host, self._port, timeout=0.5):
                    self._started_once = True
                    return
                time.sleep(0.05)
            if self._proc.poll() is None:  # alive but never answered
                self.kill()
                raise ServiceUnavailable(f"mosquitto on port {self._port} did not answer: {self._log_tail()}")
            # It exited. A port taken in the meantime: pick another unless the caller chose it.
            if "Address already in use" in self._log_tail() and time.monotonic() < deadline:
                if not self._port_fixed and not self._started_once:
                    self._port = free_port()
                    conf = self._write_config()
                time.sleep(0.2)
                continue
            raise ServiceUnavailable(f"mosquitto exited with code {self._proc.returncode}: {self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (mosquitto then saves its persistence file)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload_acl(self, acl: str | None) -> None:
        """New ACL rules, taken by the running broker (SIGHUP: Mosquitto reads its ACL file again)
        without dropping a connection; ``None``: allow everything (an ACL file that says so)."""
        if self._acl is None:
            raise ValueError("a broker started without an ACL file cannot be given one without a restart")
        self._acl = acl if acl is not None else "topic readwrite #\n"
        (self._dir / "acl").write_text(self._acl)
        os.kill(self.pid, signal.SIGHUP)

    def close(self) -> None:
        """Stop and remove the temp directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- TimescaleDB ---------------------------------------------------------------------------------


def start_timescaledb() -> str:
    """Run ``scripts/timescaledb-up`` (builds the first time, ~1 minute) and return its URL."""
    script = SCRIPTS / "timescaledb-up"
    if not os.access(script, os.X_OK):
        raise ServiceUnavailable(f"{script} is missing or not executable: {HOW_TO_FIX}")
    try:
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as e:
        raise ServiceUnavailable(f"{script} did not finish in {e.timeout} s") from e
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ServiceUnavailable(
            f"{script} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}\n"
            f"Set AQUAMI_TEST_DATABASE_URL to use another TimescaleDB, or {HOW_TO_FIX}"
        )
    return lines[-1]


def admin_url() -> str:
    """AQUAMI_TEST_DATABASE_URL when set (any TimescaleDB), else the one the script starts."""
    return os.environ.get("AQUAMI_TEST_DATABASE_URL") or start_timescaledb()


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database (URL or key=value form)."""
    if "://" in url:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path=f"/{dbname}"))
    return make_conninfo(url, dbname=dbname)


def create_database(server_url: str, template: str | None = None) -> str:
    """Create an ``aquami_test_<random>`` database, empty or a copy of ``template`` (a database
    made by ``create_migrated_template``); return its URL."""
    name = f"aquami_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(create)
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """Drop a test database, first ending any connections a test left open."""
    name = conninfo_to_dict(database_url).get("dbname")
    if not (isinstance(name, str) and name.startswith("aquami_test_")):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def migrated_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """A fresh database with every migration applied, dropped when done: a module's (a test's is
    conftest's ``migrated_database_url``). With ``template`` (``create_migrated_template``'s) it is a
    copy of that database; without, the migrations run into it (a benchmark's one database)."""
    from collector.migrate import migrate

    url = create_database(server_url, template)
    try:
        if template is None:
            migrate(url)
        yield url
    finally:
        drop_database(server_url, url)


# --- A migrated template database ------------------------------------------------------------------
#
# Running all the migrations into a fresh database took 0.3 s; copying a migrated one
# (CREATE DATABASE … TEMPLATE) takes 0.05 s. So each pytest worker migrates one template database
# and the tests' databases are copies of it. A copy is a file-level copy of the template, TimescaleDB's
# catalog (hypertables, chunks, jobs) included; tests/test_migrated_template.py proves a copy is the
# same as a migrated database. TimescaleDB's scheduler connects to every database with the extension,
# and a database cannot be copied while anyone is connected to it: the template does not allow
# connections, which the scheduler respects (timescale/timescaledb#705, #7834).

TEMPLATE_PREFIX = "aquami_template_"
#: A template this much older than now was left by a run that was killed: the next one drops it.
TEMPLATE_ABANDONED_AFTER_S = 24 * 3600


def migrations_digest() -> str:
    """SHA-256 over every migration's name and checksum: a template is named by it, so a template of
    other migrations (an edited one, one more) is never taken for this code's."""
    from collector.migrate import checksum, migration_files

    digest = hashlib.sha256()
    for name, file in migration_files():
        digest.update(f"{name}\0{checksum(file.read_bytes())}\n".encode())
    return digest.hexdigest()


def template_name(worker: str, created: float) -> str:
    """``aquami_template_<migrations>_<created, Unix s>_<worker>_<random>`` (at most 63 bytes): of one
    migration set, one process (the pytest-xdist worker's id; another checkout's run on the same server
    has its own), and when it was made, which is how an abandoned one is recognised."""
    worker_part = re.sub(r"[^a-z0-9]", "", worker.lower())[:8] or "main"
    return f"{TEMPLATE_PREFIX}{migrations_digest()[:12]}_{int(created)}_{worker_part}_{uuid.uuid4().hex[:6]}"


def template_created(name: str) -> float | None:
    """When a template named by ``template_name`` was made; None for another name."""
    match = re.fullmatch(rf"{TEMPLATE_PREFIX}[0-9a-f]{{12}}_(\d+)_[a-z0-9]+_[0-9a-f]{{6}}", name)
    return float(match.group(1)) if match else None


def create_migrated_template(server_url: str, worker: str) -> str:
    """Create a database, apply every migration, and make it a template no one may connect to;
    return its name. Templates abandoned by killed runs are dropped first."""
    from collector.migrate import migrate

    now = time.time()
    with psycopg.connect(server_url, autocommit=True) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
    for old in names:
        created = template_created(old)
        if created is not None and now - created > TEMPLATE_ABANDONED_AFTER_S:
            drop_template(server_url, old)
    name = template_name(worker, now)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        migrate(with_database(server_url, name))
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
            _end_connections(conn, name)
    except BaseException:
        drop_template(server_url, name)
        raise
    return name


def _end_connections(conn: psycopg.Connection[Any], name: str, timeout: float = 10.0) -> None:
    """End the sessions still in database ``name`` (TimescaleDB's scheduler, started by CREATE
    EXTENSION) and wait until they are gone: a copy is refused while anyone is connected."""
    deadline = time.monotonic() + timeout
    while True:
        left = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
        if not (left and left[0]):
            return
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"{left[0]} session(s) stay connected to the template database {name}")
        time.sleep(0.05)


def drop_template(server_url: str, name: str) -> None:
    """Drop a template made by ``create_migrated_template`` (a template must first stop being one)."""
    if template_created(name) is None:
        raise ValueError(f"refusing to drop {name!r}: not a test template database")
    with psycopg.connect(server_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            return
        try:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name)))
        except psycopg.errors.InvalidCatalogName:  # another run dropped it meanwhile
            return
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
