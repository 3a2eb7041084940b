"""Shared fixtures: the real services of tests/services.py, started for the tests that need them.

A service that is missing or does not start fails the test with how to fix it: a test that needs a
service never silently skips.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from typing import NoReturn

import pytest
from hypothesis import settings

from aquami.logging_setup import UtcFormatter
from tests.services import (
    MosquittoBroker,
    ServiceUnavailable,
    admin_url,
    create_database,
    create_migrated_template,
    drop_database,
    drop_template,
)

# Every @given test runs without Hypothesis's per-example deadline (200 ms by default): on a loaded
# 2-core machine an example took 285 ms for reasons of load alone and the test failed with
# DeadlineExceeded. The profile Hypothesis chose is kept otherwise: with CI set, its own "ci" profile
# (derandomized, and already without a deadline), locally the default, which explores new examples.
# A test's own @settings may still set a deadline. Loaded before any test module builds its settings.
settings.register_profile("aquami", parent=settings.default, deadline=None)
settings.load_profile("aquami")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two tests of one node id are refused at collection. pytest-xdist sends tests to its workers
    by node id, so of tests sharing one it ran only one, and reported the run green: the API fuzz's
    21 operations (one ``schema.parametrize()`` function, all of one id under pytest 9) were fuzzed
    one in 21 by ``make test`` (3,232 passed of 3,252 collected, said nowhere but in a count)."""
    counts = Counter(item.nodeid for item in items)
    twice = sorted(nodeid for nodeid, count in counts.items() if count > 1)
    if twice:
        raise pytest.UsageError(f"{len(twice)} node ids name more than one test, first {twice[0]!r}")


@pytest.fixture(autouse=True)
def _process_logging_undone() -> Iterator[None]:
    """A command run in-process (``aquami collector …`` through CliRunner) configures the process's
    logging as a real run does (aquami.logging_setup): the root logger at INFO, writing to that
    command's stderr, which CliRunner closes. Left so, every later test logged INFO records into
    caplog (a spool test saw "schema migrated" beside its warning) and onto a closed stream. Each
    test ends with the root logger's level back and the handlers that configuration added gone."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if isinstance(handler.formatter, UtcFormatter):
            root.removeHandler(handler)


def _unavailable(e: ServiceUnavailable) -> NoReturn:
    pytest.fail(str(e), pytrace=False)


def _running_broker() -> Iterator[MosquittoBroker]:
    try:
        broker = MosquittoBroker()
        broker.start()
    except ServiceUnavailable as e:
        _unavailable(e)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """One broker for the session. Tests must not stop it; use ``fresh_mosquitto`` for that."""
    yield from _running_broker()


@pytest.fixture
def fresh_mosquitto() -> Iterator[MosquittoBroker]:
    """A private broker this test may stop, kill and restart (same port)."""
    yield from _running_broker()


@pytest.fixture(scope="session")
def timescale_admin_url() -> str:
    try:
        return admin_url()
    except ServiceUnavailable as e:
        _unavailable(e)


@pytest.fixture
def database_url(timescale_admin_url: str) -> Iterator[str]:
    """A fresh, empty database on the TimescaleDB server, dropped after the test."""
    url = create_database(timescale_admin_url)
    try:
        yield url
    finally:
        drop_database(timescale_admin_url, url)


@pytest.fixture(scope="session")
def migrated_template(timescale_admin_url: str) -> Iterator[str]:
    """This worker's template database: every migration applied once, copied for each test's
    ``migrated_database_url`` (tests/services.py says why), dropped when the session ends."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    try:
        template = create_migrated_template(timescale_admin_url, worker)
    except ServiceUnavailable as e:
        _unavailable(e)
    try:
        yield template
    finally:
        drop_template(timescale_admin_url, template)


@pytest.fixture
def migrated_database_url(timescale_admin_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh database with every migration applied: a copy of the worker's migrated template,
    the same as running ``collector.migrate.migrate`` into an empty one (tests/test_migrated_template.py),
    dropped after the test. The tests of migrating itself override it to migrate for real."""
    url = create_database(timescale_admin_url, migrated_template)
    try:
        yield url
    finally:
        drop_database(timescale_admin_url, url)


@pytest.fixture
def freshly_migrated_database_url(database_url: str) -> str:
    """A fresh database into which every migration is run now (``collector.migrate.migrate``), for
    the tests of migrating itself."""
    from collector.migrate import migrate

    migrate(database_url)
    return database_url
