"""The spool's files (the readings waiting for delivery: a household's water use) are its user's,
not every user's of the gateway's box (gateway.spool_access)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.spool import Spool
from gateway.spool_access import files_of
from tests.gateway.test_spool import reading


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask a login shell and systemd give (0022): files made without a mode of their own are 0644."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _modes(spool: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in files_of(spool)}


def test_a_new_spool_and_its_wal_are_its_users_alone(tmp_path: Path, usual_umask: None) -> None:
    """Before: gw.sqlite, gw.sqlite-wal and gw.sqlite-shm were 0644, readable by every account."""
    path = tmp_path / "gw.sqlite"
    spool = Spool(path)
    try:
        spool.append([reading(n) for n in range(3)])
        modes = _modes(path)
    finally:
        spool.close()
    assert set(modes) == {"gw.sqlite", "gw.sqlite-wal", "gw.sqlite-shm"}
    assert modes == dict.fromkeys(modes, 0o600)


def test_a_spool_every_user_could_read_is_closed_to_them_as_it_opens(
    tmp_path: Path, usual_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A spool made before (0644), or opened up by hand, loses every user's permissions; its group's
    stay as an operator set them, and its readings are all there."""
    path = tmp_path / "gw.sqlite"
    spool = Spool(path)
    spool.append([reading(n) for n in range(3)])
    spool.close()
    os.chmod(path, 0o644)
    caplog.set_level(logging.WARNING, logger="gateway.spool")
    spool = Spool(path)
    try:
        modes = _modes(path)
        depth = spool.depth()
    finally:
        spool.close()
    assert modes == dict.fromkeys(modes, 0o640)
    assert depth == 3
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.spool"]
    assert said == [
        f"spool {path}: every user of this machine could read it; now only its owner and group may ({path})"
    ]


def test_a_spool_closed_to_others_is_left_as_it_is_and_says_nothing(
    tmp_path: Path, usual_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gw.sqlite"
    Spool(path).close()
    os.chmod(path, 0o660)  # an operator's group may write it: theirs to decide
    caplog.set_level(logging.WARNING, logger="gateway.spool")
    Spool(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert [r for r in caplog.records if r.name == "gateway.spool"] == []
