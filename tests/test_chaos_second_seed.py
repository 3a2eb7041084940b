"""The second of CI's chaos seeds (and every second one of ``AQUAMI_CHAOS_SEEDS``): the test of
:mod:`tests.test_chaos`, in a file of its own so that ``--dist loadfile`` can run it on the other
worker, beside the first seed, where the two (~30 s of real time each) ran one after the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import MosquittoBroker
from tests.test_chaos import SECOND_SEEDS, crash_and_freeze, shipped_broker

pytestmark = pytest.mark.services


@pytest.fixture
def chaos_broker() -> Iterator[MosquittoBroker]:
    with shipped_broker() as broker:
        yield broker


@pytest.mark.parametrize("seed", SECOND_SEEDS)
def test_random_crashes_and_freezes_lose_no_reading_and_store_none_twice(
    seed: int, migrated_database_url: str, chaos_broker: MosquittoBroker, tmp_path: Path
) -> None:
    crash_and_freeze(seed, migrated_database_url, chaos_broker, tmp_path)
