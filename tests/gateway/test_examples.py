"""The example configurations that ship with the project are valid: people start from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "gateway" / "examples").glob("*.toml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"gateway.toml", "compose-gateway.toml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_configuration_loads(path: Path):
    config = load_config(path)
    assert config.buses and config.meters
    assert len({m.meter_id for m in config.meters}) == len(config.meters)
