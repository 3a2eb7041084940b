"""``aquami demo --data-dir`` makes its folder: the gateway never makes its spool's folder (a card
that did not mount must not get a new spool on the root filesystem), so the demo, whose folder it
is, makes it. With the embedded database its setup made the folder too; with ``--database-url``
nothing else did."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aquami.cli import app


def test_the_demo_makes_its_data_dir_for_its_gateway_spool(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "there"
    options = ["--data-dir", str(data_dir), "--duration", "3", "--port", "0", "--meters", "1", "--poll-interval", "0.5"]
    result = CliRunner().invoke(app, ["demo", "--database-url", database_url, *options], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "· stopped cleanly" in result.output, result.output
    assert (data_dir / "gateway-spool.sqlite").is_file()


def test_the_demo_speaks_to_the_stdout_in_place_when_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Not to the one in place when aquami.demo was imported: a test runner's, closed since (the
    data-dir test above failed "I/O operation on closed file" after another test's CliRunner)."""
    from aquami.demo import Demo, DemoOptions

    Demo(DemoOptions()).say("· one line")
    assert capsys.readouterr().out == "· one line\n"
