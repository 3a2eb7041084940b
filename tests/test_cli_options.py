"""The command line refuses impossible option values up front, naming the option, before it starts anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aquami.cli import app


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "modbus-tcp", "--port", "99999"],
        ["server", "run", "--database-url", "postgresql://127.0.0.1:1/none", "--port", "70000"],
        ["demo", "--port", "-1"],
    ],
)
def test_a_port_out_of_range_is_refused_by_name(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--port'" in result.output
